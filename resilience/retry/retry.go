// Package retry holds the pieces the proxy needs to retry failed upstream
// attempts without turning an outage into a retry storm: exponential backoff
// with full jitter, the method and status rules of a route's retry block, and
// per-route retry budgets that cap retries at a share of recent traffic.
package retry

import (
	"math/rand/v2"
	"slices"
	"time"

	"github.com/tenantgate/gateway/events"
)

// DefaultRetryableStatusCodes are retried when a retry block lists none.
var DefaultRetryableStatusCodes = []int{500, 502, 503, 504}

// Backoff is min(max, base*2^attempt) with full jitter (uniform in [0, that]);
// attempt starts at 0. Full jitter spreads the retries of many clients that
// failed at the same moment instead of synchronizing them.
func Backoff(attempt int, base, max time.Duration) time.Duration {
	if base <= 0 || max <= 0 {
		return 0
	}
	if attempt < 0 {
		attempt = 0
	}
	ceiling := max
	// base<<attempt overflows long before 62 doublings; stop doubling once past max.
	if attempt < 62 && base <= max>>uint(attempt) {
		ceiling = base << uint(attempt)
	}
	return time.Duration(rand.Int64N(int64(ceiling) + 1))
}

// MethodRetryable reports whether a request with this method may be retried:
// the idempotent methods GET, HEAD, OPTIONS, PUT and DELETE, or any method
// when the route sets RetryNonIdempotent. A disabled retry block retries nothing.
func MethodRetryable(method string, cfg events.Retry) bool {
	if !cfg.Enabled {
		return false
	}
	if cfg.RetryNonIdempotent {
		return true
	}
	switch method {
	case "GET", "HEAD", "OPTIONS", "PUT", "DELETE":
		return true
	}
	return false
}

// StatusRetryable reports whether an upstream answer with this status may be
// retried: it is in the route's RetryableStatusCodes (a nil list means
// DefaultRetryableStatusCodes; an empty one, none). A disabled block retries nothing.
func StatusRetryable(status int, cfg events.Retry) bool {
	if !cfg.Enabled {
		return false
	}
	codes := cfg.RetryableStatusCodes
	if codes == nil {
		codes = DefaultRetryableStatusCodes
	}
	return slices.Contains(codes, status)
}
