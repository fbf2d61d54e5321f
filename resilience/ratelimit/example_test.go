package ratelimit_test

import (
	"context"
	"fmt"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/resilience/ratelimit"
)

// A tenant limited to 2 requests per second: the third is refused, and the
// decision carries what the X-RateLimit-* and Retry-After headers need.
func ExampleLocal() {
	l := ratelimit.NewLocal()
	rl := events.RateLimit{Limit: 2, WindowMs: 1000}
	for range 3 {
		d := l.Allow(context.Background(), "tenant-1", rl)
		fmt.Printf("allowed=%v limit=%d remaining=%d retry-after=%ds\n", d.Allowed, d.Limit, d.Remaining, d.RetryAfterSeconds())
	}
	// Output:
	// allowed=true limit=2 remaining=1 retry-after=0s
	// allowed=true limit=2 remaining=0 retry-after=0s
	// allowed=false limit=2 remaining=0 retry-after=1s
}
