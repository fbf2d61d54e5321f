package testenv

import (
	"testing"
	"time"
)

// WaitFor polls cond every 2 ms until it holds, and fails t naming what was
// awaited if it does not within the given time.
func WaitFor(t testing.TB, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
