// Package ratelimit enforces each tenant's sliding-window rate limit: at most
// Limit requests in any WindowMs. Local keeps the windows in memory (embedded
// mode, and the fallback while Redis is away); Redis shares them across every
// instance with one Lua script per round trip, leasing slices of a tenant's
// quota so that most requests are decided without a Redis call.
package ratelimit

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenantgate/gateway/resilience/promutil"
)

// Rule is a tenant's limit: at most Limit requests in any Window. A Limit
// or Window of zero or less is no limit.
type Rule struct {
	Limit  int
	Window time.Duration
}

func (r Rule) unlimited() bool { return r.Limit <= 0 || r.windowMs() <= 0 }

// windowMs is the window in whole milliseconds, the unit the shared log
// keeps (the contract's windowMs).
func (r Rule) windowMs() int64 { return r.Window.Milliseconds() }

// Decision is the outcome of one Allow, with what the rate-limit headers need.
type Decision struct {
	Allowed   bool
	Limit     int
	Remaining int       // after this request, >= 0
	Reset     time.Time // when the window frees capacity; header X-RateLimit-Reset = Unix seconds (rounded up)
	// RetryAfter is > 0 when !Allowed; header Retry-After = whole seconds rounded up.
	RetryAfter time.Duration
}

// Limiter decides whether a tenant's request fits its rate limit. An
// unlimited rule admits and reports Limit 0. ctx is the request's: a
// limiter that must ask Redis gives up when it ends.
type Limiter interface {
	Allow(ctx context.Context, tenantID string, rule Rule) Decision
}

var (
	_ Limiter = (*Local)(nil)
	_ Limiter = (*Redis)(nil)
)

// ResetUnix is the X-RateLimit-Reset header value: d.Reset in Unix seconds,
// rounded up.
func (d Decision) ResetUnix() int64 {
	s := d.Reset.Unix()
	if d.Reset.Nanosecond() > 0 {
		s++
	}
	return s
}

// RetryAfterSeconds is the Retry-After header value: RetryAfter in whole
// seconds, rounded up (at least 1 when denied).
func (d Decision) RetryAfterSeconds() int64 {
	if d.RetryAfter <= 0 {
		if d.Allowed {
			return 0
		}
		return 1
	}
	return int64((d.RetryAfter + time.Second - 1) / time.Second)
}

func unlimited() Decision { return Decision{Allowed: true} }

// metrics are the limiter's counters; a nil *metrics counts nothing.
type metrics struct {
	allowed, denied prometheus.Counter
	fallbacks       prometheus.Counter
	redisCalls      prometheus.Counter
	redisWaits      prometheus.Counter
	redisUp         prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, source string) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	decisions, err := promutil.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gateway", Subsystem: "ratelimit", Name: "decisions_total",
		Help: "Rate-limit decisions by result and by who decided (local, redis, fallback).",
	}, []string{"result", "source"}))
	if err != nil {
		return nil, err
	}
	fallbacks, err := promutil.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "gateway", Subsystem: "ratelimit", Name: "redis_fallbacks_total",
		Help: "Requests decided by the local limiter because Redis was unavailable.",
	}))
	if err != nil {
		return nil, err
	}
	calls, err := promutil.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "gateway", Subsystem: "ratelimit", Name: "redis_calls_total",
		Help: "Round trips to Redis (leases and checks); far fewer than decisions when leasing works.",
	}))
	if err != nil {
		return nil, err
	}
	waits, err := promutil.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "gateway", Subsystem: "ratelimit", Name: "redis_waits_total",
		Help: "Requests that waited for a Redis call (no lease at hand); under steady traffic leases are fetched ahead and this stays flat.",
	}))
	if err != nil {
		return nil, err
	}
	up, err := promutil.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "gateway", Subsystem: "ratelimit", Name: "redis_up",
		Help: "1 while the shared rate limiter reaches Redis, 0 while it falls back.",
	}))
	if err != nil {
		return nil, err
	}
	// Allowed and denied both come from the source that decided; the
	// fallback's decisions are labelled by the caller through fallbacks.
	return &metrics{
		allowed:    decisions.WithLabelValues("allowed", source),
		denied:     decisions.WithLabelValues("denied", source),
		fallbacks:  fallbacks,
		redisCalls: calls,
		redisWaits: waits,
		redisUp:    up,
	}, nil
}

func (m *metrics) waited() {
	if m != nil {
		m.redisWaits.Inc()
	}
}

func (m *metrics) decision(d Decision) {
	if m == nil {
		return
	}
	if d.Allowed {
		m.allowed.Inc()
	} else {
		m.denied.Inc()
	}
}
