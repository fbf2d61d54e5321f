package health

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenantgate/gateway/events"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// upstream is a real HTTP server on 127.0.0.1 whose health can be flipped.
type upstream struct {
	srv    *httptest.Server
	down   atomic.Bool
	slow   atomic.Bool
	probes atomic.Int64
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		u.probes.Add(1)
		if u.slow.Load() {
			time.Sleep(200 * time.Millisecond)
		}
		if u.down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) target(t *testing.T, route string, hc events.HealthCheck) Target {
	t.Helper()
	probe, err := ProbeURL(u.srv.URL+"/base", hc.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	return Target{Key: Key{TenantID: "t1", RouteID: route, Upstream: u.srv.URL + "/base"}, URL: probe, Config: hc}
}

// fixedTargets is a Targets whose set the test can change.
type fixedTargets struct {
	mu sync.Mutex
	ts []Target
}

func (f *fixedTargets) get() []Target {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Target(nil), f.ts...)
}
func (f *fixedTargets) set(ts ...Target) {
	f.mu.Lock()
	f.ts = ts
	f.mu.Unlock()
}

func run(t *testing.T, r interface{ Run(context.Context) error }) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not stop on cancel")
		}
	})
}

// within polls cond and returns how long it took to hold, failing past limit.
func within(t *testing.T, what string, limit time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("not within %v: %s", limit, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

var fast = events.HealthCheck{Enabled: true, Endpoint: "/health", IntervalMs: 50, TimeoutMs: 100, HealthyThreshold: 2, UnhealthyThreshold: 3}

func TestLocalFlip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		break_ func(*upstream)
		fix    func(*upstream)
		slow   bool
	}{
		{name: "non-2xx answers", break_: func(u *upstream) { u.down.Store(true) }, fix: func(u *upstream) { u.down.Store(false) }},
		{name: "answers over timeoutMs", break_: func(u *upstream) { u.slow.Store(true) }, fix: func(u *upstream) { u.slow.Store(false) }, slow: true},
		{name: "connection refused", break_: func(u *upstream) { u.srv.Close() }, fix: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up := newUpstream(t)
			tg := up.target(t, "r1", fast)
			targets := &fixedTargets{}
			targets.set(tg)
			l, err := NewLocal(Config{}, targets.get, quiet)
			if err != nil {
				t.Fatal(err)
			}
			if !l.Healthy(tg.Key) {
				t.Fatal("unhealthy before any probe")
			}
			run(t, l)
			within(t, "first probe", time.Second, func() bool { return up.probes.Load() > 0 })
			if !l.Healthy(tg.Key) {
				t.Fatal("a healthy upstream was marked unhealthy")
			}
			tc.break_(up)
			// unhealthyThreshold probes an interval apart (+ one interval of
			// phase, one of timeout and scheduling slack).
			// Probes run every interval, but one that hangs until timeoutMs
			// delays the next to the first interval after it ends.
			period := time.Duration(fast.IntervalMs) * time.Millisecond
			if tc.slow {
				period += time.Duration(fast.TimeoutMs) * time.Millisecond
			}
			limit := time.Duration(fast.UnhealthyThreshold+1)*period + 100*time.Millisecond
			took := within(t, "marked unhealthy", limit, func() bool { return !l.Healthy(tg.Key) })
			t.Logf("unhealthy after %v", took)
			if tc.fix == nil {
				return
			}
			tc.fix(up)
			limit = time.Duration(fast.IntervalMs*(fast.HealthyThreshold+1)+fast.TimeoutMs+100) * time.Millisecond
			took = within(t, "healthy again", limit, func() bool { return l.Healthy(tg.Key) })
			t.Logf("healthy again after %v", took)
		})
	}
}

func TestLocalOnlyFlipsTheFailingUpstream(t *testing.T) {
	t.Parallel()
	a, b := newUpstream(t), newUpstream(t)
	ta, tb := a.target(t, "r1", fast), b.target(t, "r1", fast)
	targets := &fixedTargets{}
	targets.set(ta, tb)
	l, err := NewLocal(Config{Refresh: 20 * time.Millisecond}, targets.get, quiet)
	if err != nil {
		t.Fatal(err)
	}
	run(t, l)
	a.down.Store(true)
	within(t, "a unhealthy", 2*time.Second, func() bool { return !l.Healthy(ta.Key) })
	if !l.Healthy(tb.Key) {
		t.Fatal("b marked unhealthy with a")
	}
	// A target that is no longer checked counts as healthy again.
	targets.set(tb)
	within(t, "a forgotten", time.Second, func() bool { return l.Healthy(ta.Key) })
}

func TestDisabledCheckNeverProbes(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	off := fast
	off.Enabled = false
	targets := &fixedTargets{}
	targets.set(up.target(t, "r1", off))
	l, err := NewLocal(Config{Refresh: 10 * time.Millisecond}, targets.get, quiet)
	if err != nil {
		t.Fatal(err)
	}
	run(t, l)
	// Give the scheduler several rounds to (wrongly) probe.
	deadline := time.Now().Add(200 * time.Millisecond)
	for time.Now().Before(deadline) {
		if up.probes.Load() != 0 {
			t.Fatal("a disabled health check probed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestProbeURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		upstream string
		endpoint string
		want     string
		wantErr  bool
	}{
		{name: "base path dropped", upstream: "http://10.0.0.1:9001/base", endpoint: "/health", want: "http://10.0.0.1:9001/health"},
		{name: "https kept", upstream: "https://api.example.com", endpoint: "/status", want: "https://api.example.com/status"},
		{name: "endpoint without slash", upstream: "http://h:1", endpoint: "ping", want: "http://h:1/ping"},
		{name: "default endpoint", upstream: "http://h:1", endpoint: "", want: "http://h:1/health"},
		{name: "relative upstream", upstream: "/nohost", endpoint: "/health", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ProbeURL(tc.upstream, tc.endpoint)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("ProbeURL = %q, %v; want %q (error %v)", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestNewLocalValidates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     Config
		targets Targets
	}{
		{name: "nil targets", cfg: Config{}},
		{name: "negative concurrency", cfg: Config{Concurrency: -1}, targets: func() []Target { return nil }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := NewLocal(tc.cfg, tc.targets, quiet); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}
