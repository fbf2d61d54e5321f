package announce

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync/atomic"
	"time"
)

// What the Redis-shared forms of the mechanisms have in common besides the
// subscription: how an upstream appears in their keys, how an instance names
// itself, and how a lasting Redis outage is logged.

// URLHash is an upstream URL's part of a Redis key: short, and free of the
// characters a URL may hold.
func URLHash(upstream string) string {
	sum := sha256.Sum256([]byte(upstream))
	return hex.EncodeToString(sum[:8])
}

// NewInstanceID is a random id that tells this instance's leases and
// announcements from other instances'.
func NewInstanceID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// LogThrottle lets one log line through per period, so that an outage is
// logged while it lasts, not once per failed call.
type LogThrottle struct{ last atomic.Int64 }

// Allow reports whether a line may be logged now.
func (t *LogThrottle) Allow(period time.Duration) bool {
	now := time.Now().UnixNano()
	last := t.last.Load()
	return now-last >= int64(period) && t.last.CompareAndSwap(last, now)
}

// TenantKey is the Redis key of one tenant's runtime state,
// <prefix><kind>:{<tenantID>}:<part>:... The braces are a Redis Cluster hash
// tag: every key of a tenant hashes to one slot, so a script or transaction
// may use several of them, and each tenant's state stays on one node.
func TenantKey(prefix, kind, tenantID string, parts ...string) string {
	var b strings.Builder
	b.Grow(len(prefix) + len(kind) + len(tenantID) + 4 + 24*len(parts))
	b.WriteString(prefix)
	b.WriteString(kind)
	b.WriteString(":{")
	b.WriteString(tenantID)
	b.WriteByte('}')
	for _, p := range parts {
		b.WriteByte(':')
		b.WriteString(p)
	}
	return b.String()
}
