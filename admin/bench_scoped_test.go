package admin

import "testing"

// BenchmarkAdminReadScopedKey is BenchmarkAdminRead with a named viewer key
// scoped to the tenant: the snapshot lookup and the scope check.
func BenchmarkAdminReadScopedKey(b *testing.B) { benchmarkAdminRead(b, "") }
