package health

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
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

func (u *upstream) target(t *testing.T, route string, hc Check) Target {
	t.Helper()
	return u.targetAt(t, route, "/health", hc)
}

func (u *upstream) targetAt(t *testing.T, route, endpoint string, hc Check) Target {
	t.Helper()
	probe, err := ProbeURL(u.srv.URL+"/base", endpoint)
	if err != nil {
		t.Fatal(err)
	}
	return Target{Key: Key{TenantID: "t1", RouteID: route, Upstream: u.srv.URL + "/base"}, URL: probe, Check: hc}
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

var fast = Check{Interval: 50 * time.Millisecond, Timeout: 100 * time.Millisecond, HealthyThreshold: 2, UnhealthyThreshold: 3}

// slow is a check whose next probe is an hour away: any probe after the
// first is one the checker was told to send.
var slow = Check{Interval: time.Hour, Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 1}

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
			l, err := NewLocal(Config{}, quiet)
			if err != nil {
				t.Fatal(err)
			}
			l.SetTargets([]Target{tg})
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
			period := fast.Interval
			if tc.slow {
				period += fast.Timeout
			}
			limit := time.Duration(fast.UnhealthyThreshold+1)*period + 100*time.Millisecond
			took := within(t, "marked unhealthy", limit, func() bool { return !l.Healthy(tg.Key) })
			t.Logf("unhealthy after %v", took)
			if tc.fix == nil {
				return
			}
			tc.fix(up)
			limit = fast.Interval*time.Duration(fast.HealthyThreshold+1) + fast.Timeout + 100*time.Millisecond
			took = within(t, "healthy again", limit, func() bool { return l.Healthy(tg.Key) })
			t.Logf("healthy again after %v", took)
		})
	}
}

func TestLocalOnlyFlipsTheFailingUpstream(t *testing.T) {
	t.Parallel()
	a, b := newUpstream(t), newUpstream(t)
	ta, tb := a.target(t, "r1", fast), b.target(t, "r1", fast)
	l, err := NewLocal(Config{}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	l.SetTargets([]Target{ta, tb})
	run(t, l)
	a.down.Store(true)
	within(t, "a unhealthy", 2*time.Second, func() bool { return !l.Healthy(ta.Key) })
	if !l.Healthy(tb.Key) {
		t.Fatal("b marked unhealthy with a")
	}
	// A target that is no longer checked counts as healthy again, and is
	// no longer probed.
	l.SetTargets([]Target{tb})
	within(t, "a forgotten", time.Second, func() bool { return l.Healthy(ta.Key) })
	time.Sleep(2 * fast.Timeout) // let a probe already in flight end
	before := a.probes.Load()
	time.Sleep(4 * fast.Interval) // a measuring period: four intervals without a probe
	if n := a.probes.Load() - before; n != 0 {
		t.Fatalf("a forgotten target was probed %d more times", n)
	}
}

// The checker reacts to SetTargets: a new target is probed at once, before
// Run's first tick and whatever its interval; a target whose endpoint,
// interval or thresholds change is probed again at once; one given again
// unchanged is not.
func TestLocalProbesNewAndChangedTargetsAtOnce(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	l, err := NewLocal(Config{}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	run(t, l)
	tg := up.target(t, "r1", slow)
	set := func(ts ...Target) { l.SetTargets(ts) }
	set(tg)
	within(t, "the first probe of a new target", 10*time.Second, func() bool { return up.probes.Load() == 1 })
	for range 50 {
		set(tg) // unchanged: nothing to do
	}
	other := up.target(t, "r2", slow)
	set(tg, other)
	within(t, "the first probe of a second target", 10*time.Second, func() bool { return up.probes.Load() >= 2 })
	if n := up.probes.Load(); n != 2 {
		t.Fatalf("%d probes after giving an unchanged target again, want 2", n)
	}

	steps := []struct {
		name   string
		change func(Target) Target
	}{
		{name: "endpoint", change: func(t0 Target) Target { t0.URL = up.srv.URL + "/health?v=2"; return t0 }},
		{name: "threshold", change: func(t0 Target) Target { t0.Check.UnhealthyThreshold = 5; return t0 }},
		{name: "timeout", change: func(t0 Target) Target { t0.Check.Timeout = 2 * time.Second; return t0 }},
	}
	for _, st := range steps {
		want := up.probes.Load() + 1
		tg = st.change(tg)
		set(tg, other)
		within(t, "a probe after a changed "+st.name, 10*time.Second, func() bool { return up.probes.Load() >= want })
		if n := up.probes.Load(); n != want {
			t.Fatalf("%d probes after a changed %s, want %d", n, st.name, want)
		}
	}

	// A shorter interval: probed now, then at the new pace.
	before := up.probes.Load()
	tg.Check.Interval = fast.Interval
	set(tg, other)
	within(t, "probes at the new interval", 10*time.Second, func() bool { return up.probes.Load() >= before+3 })
}

// A target that changes while its previous probe still runs is probed as
// soon as that probe ends, not an interval later.
func TestLocalChangedWhileProbing(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	up.slow.Store(true) // each probe takes 200ms
	l, err := NewLocal(Config{}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	run(t, l)
	tg := up.target(t, "r1", slow)
	l.SetTargets([]Target{tg})
	within(t, "the first probe under way", 10*time.Second, func() bool { return up.probes.Load() == 1 })
	tg.Check.HealthyThreshold = 3
	l.SetTargets([]Target{tg})
	within(t, "a probe of the changed target", 10*time.Second, func() bool { return up.probes.Load() == 2 })
}

func TestLocalSetTargetsBeforeRun(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	l, err := NewLocal(Config{}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	up.down.Store(true)
	tg := up.target(t, "r1", slow)
	l.SetTargets([]Target{tg, tg}) // a key given twice counts once
	run(t, l)
	within(t, "probed unhealthy", 10*time.Second, func() bool { return !l.Healthy(tg.Key) })
	time.Sleep(50 * time.Millisecond) // a second probe, if one were started, would have arrived
	if n := up.probes.Load(); n != 1 {
		t.Fatalf("%d probes of a target given twice, want 1", n)
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
	if _, err := NewLocal(Config{Concurrency: -1}, quiet); err == nil {
		t.Fatal("negative Concurrency: want an error")
	}
}

func TestCheckDefaults(t *testing.T) {
	t.Parallel()
	got := Check{}.withDefaults()
	want := Check{Interval: 30 * time.Second, Timeout: 5 * time.Second, HealthyThreshold: 2, UnhealthyThreshold: 3}
	if got != want {
		t.Fatalf("Check{}.withDefaults() = %+v, want %+v", got, want)
	}
	if c := (Check{Interval: time.Second, HealthyThreshold: 7}).withDefaults(); c.Interval != time.Second || c.HealthyThreshold != 7 {
		t.Fatalf("set fields were replaced: %+v", c)
	}
}
