package retry_test

import (
	"fmt"

	"github.com/tenantgate/gateway/resilience/retry"
)

// During an outage every request wants to retry. The budget lets through the
// floor (3 per second over 10 s) plus 20% of the route's recent requests.
func ExampleBudgets() {
	b := retry.NewBudgets(retry.BudgetConfig{})
	for range 500 {
		b.Request("route-1")
	}
	allowed := 0
	for range 500 * 3 { // each request would retry 3 times
		if b.AllowRetry("route-1") {
			allowed++
		}
	}
	fmt.Println("retries allowed:", allowed)
	// Output:
	// retries allowed: 100
}
