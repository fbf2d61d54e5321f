// Package retry holds the pieces the proxy needs to retry failed upstream
// attempts without turning an outage into a retry storm: exponential backoff
// with full jitter, the method and status rules of a route's retry block, and
// per-route retry budgets that cap retries at a share of recent traffic.
package retry

import (
	"math/rand/v2"
	"slices"
	"time"
)

// Policy is one route's retry settings, as the route configures them (the
// route model fills its defaults).
type Policy struct {
	MaxRetries int
	BaseDelay  time.Duration // the first backoff's ceiling
	MaxDelay   time.Duration // no backoff's ceiling is higher
	// RetryableStatusCodes are the upstream answers retried (connection
	// errors and timeouts always are).
	RetryableStatusCodes []int
	// NonIdempotent retries every method, not only the idempotent ones.
	NonIdempotent bool
}

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

// Backoff is the delay before retry number attempt (from 0) under p.
func (p Policy) Backoff(attempt int) time.Duration { return Backoff(attempt, p.BaseDelay, p.MaxDelay) }

// MethodRetryable reports whether a request with this method may be retried:
// the idempotent methods GET, HEAD, OPTIONS, PUT and DELETE, or any method
// with NonIdempotent.
func (p Policy) MethodRetryable(method string) bool {
	if p.NonIdempotent {
		return true
	}
	switch method {
	case "GET", "HEAD", "OPTIONS", "PUT", "DELETE":
		return true
	}
	return false
}

// StatusRetryable reports whether an upstream answer with this status may be
// retried: it is one of RetryableStatusCodes.
func (p Policy) StatusRetryable(status int) bool {
	return slices.Contains(p.RetryableStatusCodes, status)
}
