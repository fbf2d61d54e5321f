package projections

import (
	"runtime/debug"
	"sync"
)

// Building a whole state apart from the one serving (a checkpoint load, a
// replay) leaves about its size again as garbage. The collector frees it,
// but the runtime gives freed memory back to the OS only slowly, so without
// help RSS stays near its peak for minutes: with 100,000 routes, 560 MiB
// after writing the checkpoints a cold start left out, against 130 MiB
// serving. An orchestrator sizes the pod for that peak, or kills it.

var (
	releaseRequests = make(chan struct{}, 1)
	startReleaser   sync.Once
)

// ReleaseMemory collects garbage and returns it to the OS in the
// background: requests made while one runs are served by a single run after
// it, so a burst of history queries costs at most two collections. Call it
// once a state built apart from the serving one has been used.
func ReleaseMemory() {
	startReleaser.Do(func() {
		go func() {
			for range releaseRequests {
				debug.FreeOSMemory()
			}
		}()
	})
	select {
	case releaseRequests <- struct{}{}:
	default: // one is queued already
	}
}
