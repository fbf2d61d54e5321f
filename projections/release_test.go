package projections

import (
	"runtime"
	"testing"
	"time"
)

func forcedGCs() uint32 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.NumForcedGC
}

// A burst of release requests (many history answers at once) costs at most
// the run under way and one after it, not a collection each.
func TestReleaseMemoryCoalescesABurst(t *testing.T) {
	ReleaseMemory() // start the releaser and let it go idle
	waitForcedGCsSettle(t)
	before := forcedGCs()
	for range 100 {
		ReleaseMemory()
	}
	after := waitForcedGCsSettle(t)
	if runs := after - before; runs < 1 || runs > 2 {
		t.Fatalf("100 release requests ran %d forced collections, want 1 or 2", runs)
	}
}

// waitForcedGCsSettle waits until no forced collection started for a while
// and returns their count.
func waitForcedGCsSettle(t *testing.T) uint32 {
	t.Helper()
	last, still := forcedGCs(), 0
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		n := forcedGCs()
		if n == last && len(releaseRequests) == 0 {
			if still++; still == 6 {
				return n
			}
			continue
		}
		last, still = n, 0
	}
	t.Fatal("forced collections did not settle")
	return 0
}
