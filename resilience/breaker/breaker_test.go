package breaker

import (
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newTestLocal() (*Local, *clock) {
	c := &clock{now: time.Unix(1_700_000_000, 0)}
	l := NewLocal()
	l.now = c.Now
	return l, c
}

var (
	key = Key{TenantID: "t1", RouteID: "r1", Upstream: "http://127.0.0.1:9001"}
	cb  = Config{FailureThreshold: 3, SuccessThreshold: 2, OpenFor: 1000 * time.Millisecond}
)

// step is one action on a breaker and what must follow.
type step struct {
	do        string // "fail", "ok", "allow", "deny", "wait"
	wait      time.Duration
	wantState string // "" leaves the state unchecked
}

func TestLocalStateMachine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		steps []step
	}{
		{name: "opens after failureThreshold consecutive failures", steps: []step{
			{do: "fail", wantState: "closed"}, {do: "fail", wantState: "closed"}, {do: "fail", wantState: "open"},
			{do: "deny", wantState: "open"},
		}},
		{name: "a success resets the failure count", steps: []step{
			{do: "fail"}, {do: "fail"}, {do: "ok"}, {do: "fail"}, {do: "fail", wantState: "closed"},
			{do: "allow", wantState: "closed"},
		}},
		{name: "refuses while open, half-open after the timeout", steps: []step{
			{do: "fail"}, {do: "fail"}, {do: "fail", wantState: "open"},
			{do: "wait", wait: 999 * time.Millisecond, wantState: "open"}, {do: "deny", wantState: "open"},
			{do: "wait", wait: time.Millisecond, wantState: "open"}, {do: "allow", wantState: "half_open"},
		}},
		{name: "half-open admits successThreshold probes at a time", steps: []step{
			{do: "fail"}, {do: "fail"}, {do: "fail"}, {do: "wait", wait: time.Second, wantState: "open"},
			{do: "allow", wantState: "half_open"}, {do: "allow", wantState: "half_open"}, {do: "deny", wantState: "half_open"},
			{do: "ok", wantState: "half_open"}, {do: "allow", wantState: "half_open"},
		}},
		{name: "successThreshold successes close it", steps: []step{
			{do: "fail"}, {do: "fail"}, {do: "fail"}, {do: "wait", wait: time.Second, wantState: "open"},
			{do: "allow"}, {do: "allow"}, {do: "ok", wantState: "half_open"}, {do: "ok", wantState: "closed"},
			{do: "allow", wantState: "closed"}, {do: "fail", wantState: "closed"},
		}},
		{name: "a failed probe reopens it", steps: []step{
			{do: "fail"}, {do: "fail"}, {do: "fail"}, {do: "wait", wait: time.Second, wantState: "open"},
			{do: "allow", wantState: "half_open"}, {do: "fail", wantState: "open"},
			{do: "deny", wantState: "open"}, {do: "wait", wait: time.Second}, {do: "allow", wantState: "half_open"},
		}},
		{name: "an unreported probe frees its slot after a timeout", steps: []step{
			{do: "fail"}, {do: "fail"}, {do: "fail"}, {do: "wait", wait: time.Second},
			{do: "allow"}, {do: "allow"}, {do: "deny", wantState: "half_open"},
			{do: "wait", wait: time.Second}, {do: "allow", wantState: "half_open"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l, c := newTestLocal()
			for i, s := range tc.steps {
				switch s.do {
				case "fail":
					l.Report(key, cb, false)
				case "ok":
					l.Report(key, cb, true)
				case "allow", "deny":
					if got := l.Allow(key, cb); got != (s.do == "allow") {
						t.Fatalf("step %d: Allow = %v, want %v", i, got, s.do == "allow")
					}
				case "wait":
					c.Add(s.wait)
				}
				if got := l.State(key); s.wantState != "" && got.String() != s.wantState {
					t.Fatalf("step %d (%s): state %v, want %v", i, s.do, got, s.wantState)
				}
			}
		})
	}
}

func TestLocalKeysAndConfig(t *testing.T) {
	t.Parallel()
	l, _ := newTestLocal()
	for range 3 {
		l.Report(key, cb, false)
	}
	other := key
	other.Upstream = "http://127.0.0.1:9002"
	tests := []struct {
		name string
		k    Key
		cfg  Config
		want bool
	}{
		{name: "the opened upstream refuses", k: key, cfg: cb, want: false},
		{name: "another upstream of the route is closed", k: other, cfg: cb, want: true},
		{name: "another route's same upstream is closed", k: Key{TenantID: "t1", RouteID: "r2", Upstream: key.Upstream}, cfg: cb, want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := l.Allow(tc.k, tc.cfg); got != tc.want {
				t.Fatalf("Allow = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestZeroThresholdsCountAsOne(t *testing.T) {
	t.Parallel()
	l, c := newTestLocal()
	zero := Config{OpenFor: time.Second}
	l.Report(key, zero, false)
	if l.Allow(key, zero) {
		t.Fatal("allowed after one failure with a threshold of 0 (counts as 1)")
	}
	c.Add(time.Second)
	if !l.Allow(key, zero) {
		t.Fatal("no probe after OpenFor")
	}
	if l.Allow(key, zero) {
		t.Fatal("a second probe at once with a success threshold of 0 (counts as 1)")
	}
	l.Report(key, zero, true)
	if l.State(key) != Closed {
		t.Fatalf("one success did not close it: %v", l.State(key))
	}
}

func BenchmarkLocalSuccessPath(b *testing.B) {
	l := NewLocal()
	l.Report(key, cb, false) // the key exists, as on a route that once failed
	l.Report(key, cb, true)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if l.Allow(key, cb) {
				l.Report(key, cb, true)
			}
		}
	})
}
