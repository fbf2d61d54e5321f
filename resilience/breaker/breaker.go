// Package breaker keeps a circuit breaker per (route, upstream). Local keeps
// them in memory; Shared also writes every opening to Redis and announces
// openings and closings on a pub/sub channel, so all instances stop sending
// to a failing upstream together. The request path only reads local state.
package breaker

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenantgate/gateway/resilience/promutil"
)

// Key names the upstream of one route of one tenant. All fields are copied
// strings (never request buffers).
type Key struct{ TenantID, RouteID, Upstream string } // Upstream: the upstream URL as configured

// State is a breaker's state.
type State int

// Breaker states.
const (
	Closed State = iota
	Open
	HalfOpen
)

func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half_open"
	}
	return "unknown"
}

// Config is one route's breaker settings, as the route configures them
// (the route model fills its defaults; a value below 1 counts as 1).
type Config struct {
	FailureThreshold int           // consecutive failures that open it
	SuccessThreshold int           // half-open successes that close it; also the probes let through at a time
	OpenFor          time.Duration // how long it stays open before it lets probes through
}

// Breakers is what the proxy uses.
type Breakers interface {
	// Allow reports whether a request may go to k now: false while open; in
	// half-open it admits a bounded number of probes (SuccessThreshold) at a
	// time. Success path must be local (no Redis call).
	Allow(k Key, cfg Config) bool
	// Report records the outcome of a request that Allow admitted.
	Report(k Key, cfg Config, success bool)
	State(k Key) State
}

var (
	_ Breakers = (*Local)(nil)
	_ Breakers = (*Shared)(nil)
)

// thresholds are cfg's counts, at least 1 each.
func (cfg Config) thresholds() (failures, successes int) {
	return max(cfg.FailureThreshold, 1), max(cfg.SuccessThreshold, 1)
}

// transition is a change of state that Shared announces.
type transition struct {
	from, to State
	at       time.Time // when it opened, for to == Open
}

// breaker is the state of one key, behind its own lock.
type breaker struct {
	// clean is true while the breaker is closed with no failures counted:
	// the success path reads it and takes no lock.
	clean     atomic.Bool
	mu        sync.Mutex
	state     State
	failures  int           // consecutive failures while closed
	openedAt  time.Time     // monotonic
	timeout   time.Duration // the open timeout it was opened with (for re-announcing)
	probes    int           // half-open probes admitted and not yet reported
	probeAt   time.Time     // when the last probe was admitted
	successes int           // half-open successes so far
}

func (b *breaker) allow(cfg Config, now time.Time) (bool, transition) {
	_, maxProbes := cfg.thresholds()
	timeout := cfg.OpenFor
	switch b.state {
	case Open:
		if now.Sub(b.openedAt) < timeout {
			return false, transition{}
		}
		b.state, b.probes, b.successes, b.probeAt = HalfOpen, 1, 0, now
		return true, transition{from: Open, to: HalfOpen}
	case HalfOpen:
		// A probe that was never reported must not wedge the breaker: after
		// a whole timeout without news its slot is given back.
		if b.probes >= maxProbes && now.Sub(b.probeAt) >= timeout {
			b.probes = 0
		}
		if b.probes >= maxProbes {
			return false, transition{}
		}
		b.probes++
		b.probeAt = now
		return true, transition{}
	}
	return true, transition{}
}

func (b *breaker) report(cfg Config, success bool, now time.Time) transition {
	maxFailures, needSuccesses := cfg.thresholds()
	switch b.state {
	case Closed:
		if success {
			b.failures = 0
			return transition{}
		}
		b.failures++
		if b.failures >= maxFailures {
			return b.open(now, cfg)
		}
	case HalfOpen:
		if b.probes > 0 {
			b.probes--
		}
		if !success {
			return b.open(now, cfg)
		}
		b.successes++
		if b.successes >= needSuccesses {
			from := b.state
			b.state, b.failures, b.successes, b.probes = Closed, 0, 0, 0
			return transition{from: from, to: Closed}
		}
	}
	// Open: a late report of a request admitted before it opened changes nothing.
	return transition{}
}

// sync refreshes clean; called with mu held after every change.
func (b *breaker) sync() { b.clean.Store(b.state == Closed && b.failures == 0) }

func (b *breaker) open(now time.Time, cfg Config) transition {
	b.timeout = cfg.OpenFor
	from := b.state
	b.state, b.openedAt, b.failures, b.successes, b.probes = Open, now, 0, 0, 0
	return transition{from: from, to: Open, at: now}
}

// Local keeps breakers in memory, one lock per key, found through a sync.Map:
// no lock is shared by all requests, and a key that never failed costs a map
// lookup.
type Local struct {
	breakers sync.Map // Key -> *breaker
	now      func() time.Time
	m        *metrics
	notify   func(Key, Config, transition) // Shared's announcer; nil for Local
}

// LocalConfig configures NewLocalWith.
type LocalConfig struct {
	// Registerer receives the breaker metrics. Nil: none.
	Registerer prometheus.Registerer
}

// NewLocal returns in-memory breakers without metrics.
func NewLocal() *Local { return &Local{now: time.Now} }

// NewLocalWith returns in-memory breakers with metrics.
func NewLocalWith(cfg LocalConfig) (*Local, error) {
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	l := NewLocal()
	l.m = m
	return l, nil
}

// Allow implements Breakers.
func (l *Local) Allow(k Key, cfg Config) bool {
	v, ok := l.breakers.Load(k)
	if !ok {
		return true // never failed: closed
	}
	b := v.(*breaker)
	if b.clean.Load() {
		return true
	}
	b.mu.Lock()
	ok, tr := b.allow(cfg, l.now())
	b.sync()
	b.mu.Unlock()
	l.changed(k, cfg, tr)
	return ok
}

// Report implements Breakers.
func (l *Local) Report(k Key, cfg Config, success bool) {
	var b *breaker
	if v, ok := l.breakers.Load(k); ok {
		b = v.(*breaker)
	} else if success {
		return // closed with no failures stays so
	} else {
		v, _ := l.breakers.LoadOrStore(k, &breaker{})
		b = v.(*breaker)
	}
	if success && b.clean.Load() {
		return
	}
	b.mu.Lock()
	tr := b.report(cfg, success, l.now())
	b.sync()
	b.mu.Unlock()
	l.changed(k, cfg, tr)
}

// State implements Breakers. An open breaker whose timeout has passed still
// reads Open until a request asks to probe it.
func (l *Local) State(k Key) State {
	v, ok := l.breakers.Load(k)
	if !ok {
		return Closed
	}
	b := v.(*breaker)
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

// Forget drops k's breaker (its route or upstream was removed).
func (l *Local) Forget(k Key) {
	if v, ok := l.breakers.LoadAndDelete(k); ok {
		b := v.(*breaker)
		b.mu.Lock()
		l.m.moved(b.state, Closed)
		b.mu.Unlock()
	}
}

// force sets k's state from an announcement of another instance. at is when
// it opened there.
func (l *Local) force(k Key, to State, at time.Time, timeout time.Duration) {
	v, _ := l.breakers.LoadOrStore(k, &breaker{})
	b := v.(*breaker)
	b.mu.Lock()
	from := b.state
	switch to {
	case Open:
		if from == Open && !at.After(b.openedAt) {
			break
		}
		b.state, b.openedAt, b.failures, b.successes, b.probes = Open, at, 0, 0, 0
		b.timeout = timeout
	case Closed:
		b.state, b.failures, b.successes, b.probes = Closed, 0, 0, 0
	}
	b.sync()
	after := b.state
	b.mu.Unlock()
	l.m.moved(from, after)
}

func (l *Local) changed(k Key, cfg Config, tr transition) {
	if tr.from == tr.to {
		return
	}
	l.m.moved(tr.from, tr.to)
	if l.notify != nil {
		l.notify(k, cfg, tr)
	}
}

// metrics: transitions by target state and the number of breakers not closed.
type metrics struct {
	transitions *prometheus.CounterVec
	states      *prometheus.GaugeVec
	redisErrors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	tr, err := promutil.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gateway", Subsystem: "breaker", Name: "transitions_total",
		Help: "Circuit-breaker state changes on this instance, by new state.",
	}, []string{"to"}))
	if err != nil {
		return nil, err
	}
	st, err := promutil.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "gateway", Subsystem: "breaker", Name: "breakers",
		Help: "Circuit breakers currently open or half-open on this instance.",
	}, []string{"state"}))
	if err != nil {
		return nil, err
	}
	re, err := promutil.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "gateway", Subsystem: "breaker", Name: "redis_errors_total",
		Help: "Failed writes, announcements or reads of shared breaker state; breakers then work locally.",
	}))
	if err != nil {
		return nil, err
	}
	return &metrics{transitions: tr, states: st, redisErrors: re}, nil
}

func (m *metrics) moved(from, to State) {
	if m == nil || from == to {
		return
	}
	m.transitions.WithLabelValues(to.String()).Inc()
	if from != Closed {
		m.states.WithLabelValues(from.String()).Dec()
	}
	if to != Closed {
		m.states.WithLabelValues(to.String()).Inc()
	}
}

func (m *metrics) redisError() {
	if m != nil {
		m.redisErrors.Inc()
	}
}
