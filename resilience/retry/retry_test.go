package retry

import (
	"sync"
	"testing"
	"time"
)

func TestBackoffBounds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		attempt int
		base    time.Duration
		max     time.Duration
		ceiling time.Duration
	}{
		{name: "first attempt", attempt: 0, base: 100 * time.Millisecond, max: 2 * time.Second, ceiling: 100 * time.Millisecond},
		{name: "doubles", attempt: 3, base: 100 * time.Millisecond, max: 2 * time.Second, ceiling: 800 * time.Millisecond},
		{name: "capped by max", attempt: 5, base: 100 * time.Millisecond, max: 2 * time.Second, ceiling: 2 * time.Second},
		{name: "huge attempt does not overflow", attempt: 200, base: 100 * time.Millisecond, max: 2 * time.Second, ceiling: 2 * time.Second},
		{name: "negative attempt is the first", attempt: -1, base: 50 * time.Millisecond, max: time.Second, ceiling: 50 * time.Millisecond},
		{name: "zero base", attempt: 2, base: 0, max: time.Second, ceiling: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var sum time.Duration
			const n = 2000
			for range n {
				d := Backoff(tc.attempt, tc.base, tc.max)
				if d < 0 || d > tc.ceiling {
					t.Fatalf("Backoff = %v, want in [0, %v]", d, tc.ceiling)
				}
				sum += d
			}
			// Full jitter: uniform over [0, ceiling], so the mean is near half of it.
			if mean := sum / n; tc.ceiling > 0 && (mean < tc.ceiling*4/10 || mean > tc.ceiling*6/10) {
				t.Fatalf("mean %v, want about %v (full jitter)", mean, tc.ceiling/2)
			}
		})
	}
}

func TestMethodRetryable(t *testing.T) {
	t.Parallel()
	on := Policy{MaxRetries: 1}
	anyMethod := Policy{MaxRetries: 1, NonIdempotent: true}
	tests := []struct {
		name   string
		method string
		cfg    Policy
		want   bool
	}{
		{name: "GET", method: "GET", cfg: on, want: true},
		{name: "HEAD", method: "HEAD", cfg: on, want: true},
		{name: "OPTIONS", method: "OPTIONS", cfg: on, want: true},
		{name: "PUT", method: "PUT", cfg: on, want: true},
		{name: "DELETE", method: "DELETE", cfg: on, want: true},
		{name: "POST is not idempotent", method: "POST", cfg: on, want: false},
		{name: "PATCH is not idempotent", method: "PATCH", cfg: on, want: false},
		{name: "POST with retryNonIdempotent", method: "POST", cfg: anyMethod, want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.cfg.MethodRetryable(tc.method); got != tc.want {
				t.Fatalf("MethodRetryable(%q) = %v, want %v", tc.method, got, tc.want)
			}
		})
	}
}

func TestStatusRetryable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		status int
		cfg    Policy
		want   bool
	}{
		{name: "listed", status: 503, cfg: Policy{RetryableStatusCodes: []int{503}}, want: true},
		{name: "not listed", status: 500, cfg: Policy{RetryableStatusCodes: []int{503}}, want: false},
		{name: "an empty list retries no answer", status: 500, cfg: Policy{RetryableStatusCodes: []int{}}, want: false},
		{name: "no list retries no answer", status: 500, cfg: Policy{}, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.cfg.StatusRetryable(tc.status); got != tc.want {
				t.Fatalf("StatusRetryable(%d) = %v, want %v", tc.status, got, tc.want)
			}
		})
	}
}

// fakeClock is a settable clock safe for concurrent use.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func countRetries(b *Budgets, route string, n int) int {
	got := 0
	for range n {
		if b.AllowRetry(route) {
			got++
		}
	}
	return got
}

func TestBudgets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		requests int
		tries    int
		want     int
	}{
		{name: "quiet route gets the floor", requests: 0, tries: 100, want: 30},
		{name: "busy route gets 20 percent", requests: 1000, tries: 1000, want: 200},
		{name: "below the floor the floor wins", requests: 100, tries: 100, want: 30},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := &fakeClock{now: time.Unix(1_000_000, 0)}
			b := NewBudgets(BudgetConfig{Now: clock.Now})
			for range tc.requests {
				b.Request("r1")
			}
			if got := countRetries(b, "r1", tc.tries); got != tc.want {
				t.Fatalf("allowed %d retries, want %d", got, tc.want)
			}
			// Other routes have budgets of their own.
			if !b.AllowRetry("r2") {
				t.Fatal("another route's budget was spent")
			}
		})
	}
}

func TestBudgetSlidesWithTime(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Unix(2_000_000, 0)}
	b := NewBudgets(BudgetConfig{Now: clock.Now, MinPerSecond: 1, Window: 5 * time.Second})
	if got := countRetries(b, "r", 100); got != 5 {
		t.Fatalf("allowed %d, want the floor of 5", got)
	}
	clock.Add(4 * time.Second)
	if b.AllowRetry("r") {
		t.Fatal("retry allowed while the spent retries are still in the window")
	}
	clock.Add(time.Second)
	if got := countRetries(b, "r", 100); got != 5 {
		t.Fatalf("after the window moved on: allowed %d, want 5", got)
	}
}

// An outage: every request fails and wants maxRetries retries. The budget
// keeps the retries near Ratio of the traffic instead of maxRetries times it.
func TestBudgetCapsRetryStorm(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Unix(3_000_000, 0)}
	b := NewBudgets(BudgetConfig{Now: clock.Now})
	attempts, requests := 0, 0
	for range 30 { // 30 s of 200 req/s
		for range 200 {
			b.Request("r")
			requests++
			attempts++
			for range 3 {
				if !b.AllowRetry("r") {
					break
				}
				attempts++
			}
		}
		clock.Add(time.Second)
	}
	if ratio := float64(attempts-requests) / float64(requests); ratio > 0.25 {
		t.Fatalf("retries were %.0f%% of requests, want about 20%%", ratio*100)
	}
}

func BenchmarkBudgets(b *testing.B) {
	bs := NewBudgets(BudgetConfig{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			bs.Request("route")
			bs.AllowRetry("route")
		}
	})
}
