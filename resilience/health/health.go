// Package health runs active health checks of upstreams. Local probes every
// upstream from this instance; Shared elects one prober per upstream for the
// whole cluster with a Redis lease and shares the status through Redis. In
// both, Healthy reads memory only and an upstream is healthy until probed.
package health

import (
	"context"
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

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
	"github.com/tenantgate/gateway/resilience/promutil"
)

// Key names the upstream of one route of one tenant.
type Key struct{ TenantID, RouteID, Upstream string } // Upstream: the upstream URL as configured

// Target is one upstream to probe.
type Target struct {
	Key    Key
	URL    string // probe URL: the upstream's scheme, host and port with the endpoint as path
	Config events.HealthCheck
}

// Targets returns the current set; the checker asks for it each time it
// schedules probes, so route changes are picked up without a restart.
type Targets func() []Target

// Checker is what the proxy reads.
type Checker interface{ Healthy(k Key) bool } // true until probed unhealthy; no I/O

var (
	_ Checker = (*Local)(nil)
	_ Checker = (*Shared)(nil)
)

// Defaults for the fields of a health-check block left at zero.
const (
	DefaultEndpoint           = "/health"
	DefaultIntervalMs         = 30000
	DefaultTimeoutMs          = 5000
	DefaultHealthyThreshold   = 2
	DefaultUnhealthyThreshold = 3
)

func normalize(c events.HealthCheck) events.HealthCheck {
	if c.Endpoint == "" {
		c.Endpoint = DefaultEndpoint
	}
	if c.IntervalMs <= 0 {
		c.IntervalMs = DefaultIntervalMs
	}
	if c.TimeoutMs <= 0 {
		c.TimeoutMs = DefaultTimeoutMs
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

// TargetsFromSnapshot lists every upstream of every route with an enabled
// health check in the current snapshot.
func TargetsFromSnapshot(snap func() *projections.Snapshot) Targets {
	return func() []Target {
		s := snap()
		if s == nil {
			return nil
		}
		var out []Target
		for _, r := range s.Routes() {
			if r.Resilience == nil || r.Resilience.HealthCheck == nil || !r.Resilience.HealthCheck.Enabled {
				continue
			}
			hc := normalize(*r.Resilience.HealthCheck)
			for _, up := range r.Upstreams {
				u, err := ProbeURL(up.URL, hc.Endpoint)
				if err != nil {
					continue // validated on write; nothing sensible to probe
				}
				out = append(out, Target{Key: Key{TenantID: r.TenantID, RouteID: r.ID, Upstream: up.URL}, URL: u, Config: hc})
			}
		}
		return out
	}
}

// Config configures both checkers. Zero fields take their defaults.
type Config struct {
	// Client sends the probes. Default: a client that follows no redirects
	// and keeps no more than 2 idle connections per host.
	Client *http.Client
	// Concurrency caps the probes in flight. Default 64.
	Concurrency int
	// Refresh is the longest the checker waits before asking Targets again.
	// Default 1s.
	Refresh time.Duration
	// Registerer receives the health metrics. Nil: none.
	Registerer prometheus.Registerer
}

func (c *Config) defaults() error {
	if c.Client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 2
		c.Client = &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}
	}
	if c.Concurrency == 0 {
		c.Concurrency = 64
	}
	if c.Refresh == 0 {
		c.Refresh = time.Second
	}
	if c.Concurrency < 0 || c.Refresh < 0 {
		return errors.New("health: Concurrency and Refresh must be positive")
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
	next      time.Time // when the next probe is due (scheduler only)
}

// record applies a local probe result; it reports whether health flipped.
func (s *status) record(ok bool, hc events.HealthCheck) (flipped bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
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

// set applies a status learned from the cluster.
func (s *status) set(healthy bool) (flipped bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.healthy.Load() == healthy {
		return false
	}
	s.healthy.Store(healthy)
	s.successes, s.failures = 0, 0
	return true
}

// core is the scheduler both checkers share: it asks for the targets, starts
// the probes that are due and keeps the statuses.
type core struct {
	cfg      Config
	targets  Targets
	log      *slog.Logger
	m        *metrics
	statuses sync.Map // Key -> *status
	sem      chan struct{}
	// check does one target's work when due (probe, or learn from the cluster).
	check func(ctx context.Context, t Target, st *status)
}

func newCore(cfg Config, targets Targets, log *slog.Logger) (*core, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if targets == nil {
		return nil, errors.New("health: nil Targets")
	}
	if log == nil {
		log = slog.Default()
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &core{cfg: cfg, targets: targets, log: log.With("component", "health"), m: m,
		sem: make(chan struct{}, cfg.Concurrency)}, nil
}

// Healthy reports k's status: true until probed unhealthy, and for any
// upstream without an enabled health check.
func (c *core) Healthy(k Key) bool {
	v, ok := c.statuses.Load(k)
	return !ok || v.(*status).healthy.Load()
}

// run schedules probes until ctx ends.
func (c *core) run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		wake := c.schedule(ctx, &wg)
		timer.Reset(max(time.Until(wake), time.Millisecond))
	}
}

// schedule starts the probes that are due and returns when to look again.
func (c *core) schedule(ctx context.Context, wg *sync.WaitGroup) time.Time {
	now := time.Now()
	wake := now.Add(c.cfg.Refresh)
	targets, err := c.safeTargets()
	if err != nil {
		c.log.Error("health: listing targets failed", "err", err)
		return wake
	}
	seen := make(map[Key]struct{}, len(targets))
	for _, t := range targets {
		if !t.Config.Enabled {
			continue
		}
		t.Config = normalize(t.Config)
		seen[t.Key] = struct{}{}
		v, loaded := c.statuses.Load(t.Key)
		if !loaded {
			st := &status{}
			st.healthy.Store(true)
			v, loaded = c.statuses.LoadOrStore(t.Key, st)
			if !loaded {
				c.m.tracked(1)
			}
		}
		st := v.(*status)
		if now.Before(st.next) {
			wake = earliest(wake, st.next)
			continue
		}
		interval := time.Duration(t.Config.IntervalMs) * time.Millisecond
		st.next = now.Add(interval)
		wake = earliest(wake, st.next)
		if !st.running.CompareAndSwap(false, true) {
			continue // the previous probe still runs (timeout > interval)
		}
		select {
		case c.sem <- struct{}{}:
		case <-ctx.Done():
			st.running.Store(false)
			return wake
		}
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
	// Forget upstreams no longer checked: they count as healthy again.
	c.statuses.Range(func(k, v any) bool {
		if _, ok := seen[k.(Key)]; !ok {
			c.statuses.Delete(k)
			c.m.tracked(-1)
			if !v.(*status).healthy.Load() {
				c.m.unhealthy(-1)
			}
		}
		return true
	})
	return wake
}

func (c *core) safeTargets() (ts []Target, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return c.targets(), nil
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// probe sends one GET; 2xx within the timeout is a success.
func (c *core) probe(ctx context.Context, t Target) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(t.Config.TimeoutMs)*time.Millisecond)
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

// NewLocal returns a checker probing from this instance; call Run.
func NewLocal(cfg Config, targets Targets, log *slog.Logger) (*Local, error) {
	c, err := newCore(cfg, targets, log)
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
	if st.record(ok, t.Config) {
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
