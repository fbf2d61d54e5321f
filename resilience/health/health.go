// Package health runs active health checks of upstreams. Local probes every
// upstream from this instance; Shared elects one prober per upstream for the
// whole cluster with a Redis lease and shares the status through Redis. In
// both, Healthy reads memory only and an upstream is healthy until probed.
//
// The checkers are told what to probe (SetTargets) whenever the
// configuration changes; they never poll for it. A target that is new, or
// whose probe URL or Check changed, is probed at once, then every Interval.
package health

import (
	"container/heap"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenantgate/gateway/resilience/promutil"
)

// Key names the upstream of one route of one tenant.
type Key struct{ TenantID, RouteID, Upstream string } // Upstream: the upstream URL as configured

// Check is how an upstream is probed. Zero fields take their defaults.
type Check struct {
	Interval           time.Duration // between two probes; default 30s
	Timeout            time.Duration // of one probe; default 5s
	HealthyThreshold   int           // consecutive successes that mark it healthy; default 2
	UnhealthyThreshold int           // consecutive failures that mark it unhealthy; default 3
}

// Target is one upstream to probe.
type Target struct {
	Key   Key
	URL   string // probe URL: the upstream's scheme, host and port with the endpoint as path (ProbeURL)
	Check Check
}

// Checker is what the proxy reads.
type Checker interface{ Healthy(k Key) bool } // true until probed unhealthy; no I/O

var (
	_ Checker = (*Local)(nil)
	_ Checker = (*Shared)(nil)
)

// Defaults for the fields of a Check left at zero, and of a probe URL's path.
const (
	DefaultEndpoint           = "/health"
	DefaultInterval           = 30 * time.Second
	DefaultTimeout            = 5 * time.Second
	DefaultHealthyThreshold   = 2
	DefaultUnhealthyThreshold = 3
)

func (c Check) withDefaults() Check {
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.HealthyThreshold <= 0 {
		c.HealthyThreshold = DefaultHealthyThreshold
	}
	if c.UnhealthyThreshold <= 0 {
		c.UnhealthyThreshold = DefaultUnhealthyThreshold
	}
	return c
}

// ProbeURL is the URL probed for an upstream: its scheme, host and port with
// endpoint as the path (the upstream's own base path is not used).
func ProbeURL(upstream, endpoint string) (string, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return "", err
	}
	if u.Scheme == "" || u.Host == "" {
		return "", fmt.Errorf("health: upstream %q is not an absolute URL", upstream)
	}
	if endpoint == "" {
		endpoint = DefaultEndpoint
	}
	if !strings.HasPrefix(endpoint, "/") {
		endpoint = "/" + endpoint
	}
	return u.Scheme + "://" + u.Host + endpoint, nil
}

// Config configures both checkers. Zero fields take their defaults.
type Config struct {
	// Client sends the probes. Default: a client that follows no redirects
	// and keeps no more than 2 idle connections per host.
	Client *http.Client
	// RootCAs verify https probes when Client is the default one, as they
	// verify the proxied requests. Default nil: the system roots.
	RootCAs *x509.CertPool
	// Concurrency caps the probes in flight. Default 64.
	Concurrency int
	// Registerer receives the health metrics. Nil: none.
	Registerer prometheus.Registerer
}

func (c *Config) defaults() error {
	if c.Client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 2
		if c.RootCAs != nil {
			tr.TLSClientConfig = &tls.Config{RootCAs: c.RootCAs, MinVersion: tls.VersionTLS12}
		}
		c.Client = &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}
	}
	if c.Concurrency == 0 {
		c.Concurrency = 64
	}
	if c.Concurrency < 0 {
		return errors.New("health: Concurrency must be positive")
	}
	return nil
}

// status is one upstream's live state.
type status struct {
	healthy   atomic.Bool // read by Healthy
	running   atomic.Bool // a probe is in flight
	mu        sync.Mutex
	successes int
	failures  int
	heard     uint64 // statuses set from the cluster so far
	retired   bool   // no longer checked: results that come late change nothing
}

// record applies a local probe result; it reports whether health flipped.
func (s *status) record(ok bool, hc Check) (flipped bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.retired {
		return false
	}
	healthy := s.healthy.Load()
	if ok {
		s.successes++
		s.failures = 0
		if !healthy && s.successes >= hc.HealthyThreshold {
			s.healthy.Store(true)
			return true
		}
		return false
	}
	s.failures++
	s.successes = 0
	if healthy && s.failures >= hc.UnhealthyThreshold {
		s.healthy.Store(false)
		return true
	}
	return false
}

// set applies a status learned from the cluster as it happened: a probe's
// result, or an announcement of one.
func (s *status) set(healthy bool) (flipped bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.heard++
	return s.store(healthy)
}

// heardSoFar is the count setRead takes.
func (s *status) heardSoFar() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.heard
}

// setRead applies a status read from the cluster, unless a status was set
// since heardSoFar returned heard: that one is at least as new as the read.
func (s *status) setRead(healthy bool, heard uint64) (flipped bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.heard != heard {
		return false
	}
	return s.store(healthy)
}

func (s *status) store(healthy bool) (flipped bool) {
	if s.retired || s.healthy.Load() == healthy {
		return false
	}
	s.healthy.Store(healthy)
	s.successes, s.failures = 0, 0
	return true
}

// retire marks s as no longer checked and reports whether it was unhealthy.
func (s *status) retire() (wasUnhealthy bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retired = true
	return !s.healthy.Load()
}

// core is what both checkers share: the target set they are told, the
// scheduler that starts the probes when due, and the statuses.
type core struct {
	cfg      Config
	log      *slog.Logger
	m        *metrics
	statuses sync.Map // Key -> *status, read by Healthy
	sem      chan struct{}
	// check does one target's work when due (probe, or learn from the cluster).
	check func(ctx context.Context, t Target, st *status)

	// The latest SetTargets, until the scheduler takes it; wake tells it.
	mu      sync.Mutex
	pending []Target
	fresh   bool
	wake    chan struct{}
}

func newCore(cfg Config, log *slog.Logger) (*core, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &core{cfg: cfg, log: log.With("component", "health"), m: m,
		sem: make(chan struct{}, cfg.Concurrency), wake: make(chan struct{}, 1)}, nil
}

// SetTargets replaces the set of upstreams to check; call it whenever the
// configuration changes (before or while Run runs). Targets that are new,
// or whose URL or Check changed, are probed at once; those left out are
// forgotten and count as healthy again. A Key given twice counts once (the
// first). It does not block: the scheduler picks the set up.
func (c *core) SetTargets(ts []Target) {
	c.mu.Lock()
	c.pending, c.fresh = append([]Target(nil), ts...), true
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default: // already told
	}
}

func (c *core) takeTargets() ([]Target, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ts, fresh := c.pending, c.fresh
	c.pending, c.fresh = nil, false
	return ts, fresh
}

// Healthy reports k's status: true until probed unhealthy, and for any
// upstream without an enabled health check.
func (c *core) Healthy(k Key) bool {
	v, ok := c.statuses.Load(k)
	return !ok || v.(*status).healthy.Load()
}

// scheduled is a target in the scheduler's queue.
type scheduled struct {
	t       Target // Check with its defaults
	st      *status
	due     time.Time
	changed bool // not probed since it changed
	index   int  // in the queue
}

// busyRetry is how soon a changed target whose previous probe still runs
// is looked at again, rather than a whole interval later.
const busyRetry = 10 * time.Millisecond

// queue is a min-heap of targets by due time, so a scheduler pass costs the
// targets that are due, not all of them.
type queue []*scheduled

func (q queue) Len() int           { return len(q) }
func (q queue) Less(i, j int) bool { return q[i].due.Before(q[j].due) }
func (q queue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *queue) Push(x any) {
	s := x.(*scheduled)
	s.index = len(*q)
	*q = append(*q, s)
}
func (q *queue) Pop() any {
	old := *q
	s := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return s
}

// scheduler is the state of one run: only its goroutine touches it.
type scheduler struct {
	byKey map[Key]*scheduled
	queue queue
}

// run schedules probes until ctx ends.
func (c *core) run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	s := &scheduler{byKey: map[Key]*scheduled{}}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if ts, fresh := c.takeTargets(); fresh {
			c.update(s, ts, time.Now())
		}
		if !c.startDue(ctx, s, &wg, time.Now()) {
			return nil
		}
		if len(s.queue) > 0 {
			timer.Reset(max(time.Until(s.queue[0].due), time.Millisecond))
		} else {
			timer.Stop()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-c.wake:
		}
	}
}

// update makes the scheduled set equal ts.
func (c *core) update(s *scheduler, ts []Target, now time.Time) {
	seen := make(map[Key]struct{}, len(ts))
	for _, t := range ts {
		if _, dup := seen[t.Key]; dup {
			continue
		}
		seen[t.Key] = struct{}{}
		t.Check = t.Check.withDefaults()
		if e, ok := s.byKey[t.Key]; ok {
			if e.t != t {
				// Another endpoint, interval or threshold: probe it now.
				e.t, e.due, e.changed = t, now, true
				heap.Fix(&s.queue, e.index)
			}
			continue
		}
		fresh := &status{}
		fresh.healthy.Store(true)
		v, loaded := c.statuses.LoadOrStore(t.Key, fresh) // loaded: from an earlier Run
		if !loaded {
			c.m.tracked(1)
		}
		e := &scheduled{t: t, st: v.(*status), due: now}
		s.byKey[t.Key] = e
		heap.Push(&s.queue, e)
	}
	for k, e := range s.byKey {
		if _, ok := seen[k]; ok {
			continue
		}
		heap.Remove(&s.queue, e.index)
		delete(s.byKey, k)
		c.statuses.Delete(k)
		c.m.tracked(-1)
		if e.st.retire() {
			c.m.unhealthy(-1)
		}
	}
}

// startDue starts the probes that are due; false when ctx ended.
func (c *core) startDue(ctx context.Context, s *scheduler, wg *sync.WaitGroup, now time.Time) bool {
	for len(s.queue) > 0 && !s.queue[0].due.After(now) {
		e := s.queue[0]
		if !e.st.running.CompareAndSwap(false, true) {
			// The previous probe still runs (it may take up to the timeout):
			// the next tick, or soon if this one is due to a change.
			e.due = now.Add(e.t.Check.Interval)
			if e.changed {
				e.due = now.Add(busyRetry)
			}
			heap.Fix(&s.queue, 0)
			continue
		}
		e.due, e.changed = now.Add(e.t.Check.Interval), false
		heap.Fix(&s.queue, 0)
		select {
		case c.sem <- struct{}{}:
		case <-ctx.Done():
			e.st.running.Store(false)
			return false
		}
		t, st := e.t, e.st
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				st.running.Store(false)
				<-c.sem
				if p := recover(); p != nil {
					c.log.Error("health: probe panicked", "panic", p)
				}
			}()
			c.check(ctx, t, st)
		}()
	}
	return true
}

// probe sends one GET; 2xx within the timeout is a success.
func (c *core) probe(ctx context.Context, t Target) bool {
	ctx, cancel := context.WithTimeout(ctx, t.Check.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL, nil)
	if err != nil {
		c.m.probe(false)
		return false
	}
	req.Header.Set("User-Agent", "tenantgate-health/1")
	resp, err := c.cfg.Client.Do(req)
	if err != nil {
		c.m.probe(false)
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	c.m.probe(ok)
	return ok
}

// flipped logs and counts a change of an upstream's health.
func (c *core) flipped(t Target, healthy bool, source string) {
	if healthy {
		c.m.unhealthy(-1)
		c.log.Info("upstream healthy again", "tenant", t.Key.TenantID, "route", t.Key.RouteID, "upstream", t.Key.Upstream, "source", source)
	} else {
		c.m.unhealthy(1)
		c.log.Warn("upstream unhealthy", "tenant", t.Key.TenantID, "route", t.Key.RouteID, "upstream", t.Key.Upstream, "source", source)
	}
}

// Local probes every target from this instance.
type Local struct{ *core }

// NewLocal returns a checker probing from this instance; call SetTargets
// and Run.
func NewLocal(cfg Config, log *slog.Logger) (*Local, error) {
	c, err := newCore(cfg, log)
	if err != nil {
		return nil, err
	}
	l := &Local{core: c}
	c.check = l.checkLocal
	return l, nil
}

func (c *core) checkLocal(ctx context.Context, t Target, st *status) {
	ok := c.probe(ctx, t)
	if ctx.Err() != nil {
		return // shutting down: a cancelled probe says nothing of the upstream
	}
	if st.record(ok, t.Check) {
		c.flipped(t, ok, "local")
	}
}

// Run probes until ctx ends.
func (l *Local) Run(ctx context.Context) error { return l.run(ctx) }

type metrics struct {
	probes         *prometheus.CounterVec
	unhealthyGauge prometheus.Gauge
	trackedGauge   prometheus.Gauge
	redisErrors    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	probes, err := promutil.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gateway", Subsystem: "health", Name: "probes_total",
		Help: "Health probes sent by this instance, by result.",
	}, []string{"result"}))
	if err != nil {
		return nil, err
	}
	unhealthy, err := promutil.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "gateway", Subsystem: "health", Name: "unhealthy_upstreams",
		Help: "Upstreams currently marked unhealthy, as this instance sees them.",
	}))
	if err != nil {
		return nil, err
	}
	tracked, err := promutil.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "gateway", Subsystem: "health", Name: "checked_upstreams",
		Help: "Upstreams with an enabled health check.",
	}))
	if err != nil {
		return nil, err
	}
	re, err := promutil.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "gateway", Subsystem: "health", Name: "redis_errors_total",
		Help: "Failed Redis calls of the shared checker; it then probes locally.",
	}))
	if err != nil {
		return nil, err
	}
	return &metrics{probes: probes, unhealthyGauge: unhealthy, trackedGauge: tracked, redisErrors: re}, nil
}

func (m *metrics) probe(ok bool) {
	if m == nil {
		return
	}
	if ok {
		m.probes.WithLabelValues("success").Inc()
	} else {
		m.probes.WithLabelValues("failure").Inc()
	}
}

func (m *metrics) unhealthy(d float64) {
	if m != nil {
		m.unhealthyGauge.Add(d)
	}
}

func (m *metrics) tracked(d float64) {
	if m != nil {
		m.trackedGauge.Add(d)
	}
}

func (m *metrics) redisError() {
	if m != nil {
		m.redisErrors.Inc()
	}
}
