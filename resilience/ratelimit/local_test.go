package ratelimit

import (
	"context"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"
)

// fakeNow is a settable clock for Local and Redis.
type fakeNow struct {
	mu sync.Mutex
	d  time.Duration
}

func (f *fakeNow) now() time.Duration { f.mu.Lock(); defer f.mu.Unlock(); return f.d }
func (f *fakeNow) add(d time.Duration) {
	f.mu.Lock()
	f.d += d
	f.mu.Unlock()
}

func newTestLocal() (*Local, *fakeNow) {
	l := NewLocal()
	clock := &fakeNow{d: time.Hour}
	l.now = clock.now
	return l, clock
}

func TestLocalDecisions(t *testing.T) {
	t.Parallel()
	rl := Rule{Limit: 3, Window: time.Second}
	l, clock := newTestLocal()
	ctx := context.Background()
	start := l.base.Add(clock.now())
	for i, wantRemaining := range []int{2, 1, 0} {
		d := l.Allow(ctx, "t1", rl)
		if !d.Allowed || d.Remaining != wantRemaining || d.Limit != 3 || d.RetryAfter != 0 {
			t.Fatalf("request %d: %+v, want allowed with remaining %d", i, d, wantRemaining)
		}
		// The first request leaves the window about a window later.
		if r := d.Reset.Sub(start); r != time.Second {
			t.Fatalf("request %d: reset %v after the first request, want 1s", i, r)
		}
		clock.add(100 * time.Millisecond)
	}
	d := l.Allow(ctx, "t1", rl)
	if d.Allowed || d.Remaining != 0 {
		t.Fatalf("4th request: %+v, want denied", d)
	}
	// 300ms have passed since the first request: about 700ms to wait.
	if d.RetryAfter != 700*time.Millisecond {
		t.Fatalf("RetryAfter = %v, want 700ms", d.RetryAfter)
	}
	if got := d.RetryAfterSeconds(); got != 1 {
		t.Fatalf("Retry-After header = %d, want 1", got)
	}
	if other := l.Allow(ctx, "t2", rl); !other.Allowed || other.Remaining != 2 {
		t.Fatalf("another tenant: %+v, want its own window", other)
	}
	clock.add(d.RetryAfter)
	if d := l.Allow(ctx, "t1", rl); !d.Allowed || d.Remaining != 0 {
		t.Fatalf("after RetryAfter: %+v, want allowed (one slot freed)", d)
	}
}

func TestLocalLimitChangeMidWindow(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		newLimit  int
		wantAdmit int // more admissions after the change, 6 already counted
	}{
		{name: "raised", newLimit: 10, wantAdmit: 4},
		{name: "lowered below the count", newLimit: 4, wantAdmit: 0},
		{name: "unchanged", newLimit: 6, wantAdmit: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l, clock := newTestLocal()
			ctx := context.Background()
			for range 6 {
				if !l.Allow(ctx, "t", Rule{Limit: 6, Window: time.Second}).Allowed {
					t.Fatal("denied under the limit")
				}
			}
			clock.add(200 * time.Millisecond)
			got := 0
			for range 20 {
				if l.Allow(ctx, "t", Rule{Limit: tc.newLimit, Window: time.Second}).Allowed {
					got++
				}
			}
			if got != tc.wantAdmit {
				t.Fatalf("admitted %d after the change, want %d", got, tc.wantAdmit)
			}
		})
	}
}

func TestLocalUnlimited(t *testing.T) {
	t.Parallel()
	l, _ := newTestLocal()
	for range 10 {
		if d := l.Allow(context.Background(), "t", Rule{}); !d.Allowed || d.Limit != 0 {
			t.Fatalf("unlimited tenant: %+v", d)
		}
	}
}

// Random traffic well over the limit: no window ever holds more than the
// limit, and over time at least 98% of the limit is admitted; both for the
// exact log and for the slots of large limits.
func TestLocalSlidingWindowNeverExceeds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		limit int
		gap   time.Duration // mean time between offered requests
	}{
		{name: "exact log", limit: 50, gap: 500 * time.Microsecond},
		{name: "slots", limit: 5000, gap: 50 * time.Microsecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const window = time.Second
			rl := Rule{Limit: tc.limit, Window: window}
			l, clock := newTestLocal()
			ctx := context.Background()
			rng := rand.New(rand.NewPCG(1, 2))
			var admitted []time.Duration
			for clock.now() < time.Hour+10*window {
				clock.add(time.Duration(rng.Int64N(int64(2 * tc.gap)))) // about 2x the limit offered
				if l.Allow(ctx, "t", rl).Allowed {
					admitted = append(admitted, clock.now())
				}
			}
			sort.Slice(admitted, func(i, j int) bool { return admitted[i] < admitted[j] })
			for i, j := 0, 0; i < len(admitted); i++ {
				for admitted[i]-admitted[j] >= window {
					j++
				}
				if n := i - j + 1; n > tc.limit {
					t.Fatalf("%d requests admitted within one window, limit %d", n, tc.limit)
				}
			}
			span := admitted[len(admitted)-1] - admitted[0]
			if rate := float64(len(admitted)) / (float64(span) / float64(window)); rate < 0.98*float64(tc.limit) {
				t.Fatalf("admitted %.1f per window, want at least 98%% of %d", rate, tc.limit)
			}
		})
	}
}

// A limit crossing between the exact log and the slots keeps the counts.
func TestLocalLimitCrossesModes(t *testing.T) {
	t.Parallel()
	l, clock := newTestLocal()
	ctx := context.Background()
	count := func(limit, n int) int {
		got := 0
		for range n {
			if l.Allow(ctx, "t", Rule{Limit: limit, Window: time.Second}).Allowed {
				got++
			}
		}
		return got
	}
	if got := count(10, 5); got != 5 {
		t.Fatalf("admitted %d of 5 under a limit of 10", got)
	}
	if got := count(10_000, 20_000); got != 9_995 {
		t.Fatalf("raised to 10000 (slots): admitted %d more, want 9995", got)
	}
	if got := count(100, 10); got != 0 {
		t.Fatalf("lowered to 100 (log): admitted %d, want 0", got)
	}
	clock.add(time.Second + time.Second/64)
	if got := count(100, 200); got != 100 {
		t.Fatalf("a window later: admitted %d, want 100", got)
	}
}

func TestDecisionHeaders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		d         Decision
		wantReset int64
		wantRetry int64
	}{
		{name: "reset rounds up", d: Decision{Allowed: true, Reset: time.Unix(100, 1)}, wantReset: 101, wantRetry: 0},
		{name: "whole second stays", d: Decision{Allowed: true, Reset: time.Unix(100, 0)}, wantReset: 100, wantRetry: 0},
		{name: "retry rounds up", d: Decision{Reset: time.Unix(5, 0), RetryAfter: 1001 * time.Millisecond}, wantReset: 5, wantRetry: 2},
		{name: "denied retries in at least 1s", d: Decision{Reset: time.Unix(5, 0)}, wantReset: 5, wantRetry: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.d.ResetUnix(); got != tc.wantReset {
				t.Errorf("ResetUnix = %d, want %d", got, tc.wantReset)
			}
			if got := tc.d.RetryAfterSeconds(); got != tc.wantRetry {
				t.Errorf("RetryAfterSeconds = %d, want %d", got, tc.wantRetry)
			}
		})
	}
}

func BenchmarkLocalAllow(b *testing.B) {
	l := NewLocal()
	rl := Rule{Limit: 1_000_000_000, Window: time.Second}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Allow(ctx, "tenant", rl)
		}
	})
}
