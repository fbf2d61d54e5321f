package ratelimit_test

import (
	"context"
	"fmt"
	"time"

	"github.com/tenantgate/gateway/resilience/ratelimit"
)

// A tenant limited to 2 requests per second: the third is refused, and the
// decision carries what the X-RateLimit-* and Retry-After headers need.
func ExampleLocal() {
	l := ratelimit.NewLocal()
	rl := ratelimit.Rule{Limit: 2, Window: time.Second}
	for range 3 {
		d := l.Allow(context.Background(), "tenant-1", rl)
		fmt.Printf("allowed=%v limit=%d remaining=%d retry-after=%ds\n", d.Allowed, d.Limit, d.Remaining, d.RetryAfterSeconds())
	}
	// Output:
	// allowed=true limit=2 remaining=1 retry-after=0s
	// allowed=true limit=2 remaining=0 retry-after=0s
	// allowed=false limit=2 remaining=0 retry-after=1s
}
