package proxy

import (
	"strings"
	"time"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
	"github.com/tenantgate/gateway/resilience/balance"
	"github.com/tenantgate/gateway/resilience/breaker"
	"github.com/tenantgate/gateway/resilience/retry"
)

// pruneOnChange drops balancer state and upstream clients that no route of
// the new snapshot uses. One request per seq does it, off the request path.
func (p *Proxy) pruneOnChange(snap *projections.Snapshot) {
	seq := snap.Seq()
	old := p.seenSeq.Load()
	if seq == old || !p.seenSeq.CompareAndSwap(old, seq) || old < 0 {
		return
	}
	go func() {
		defer func() {
			if r := recover(); r != nil {
				p.log.Error("proxy: panic pruning state", "panic", r)
			}
		}()
		live := make(map[string]bool)
		hosts := make(map[string]bool)
		for _, r := range snap.Routes() {
			live[r.ID] = true
			for _, u := range r.Upstreams {
				hosts[u.URL] = true
			}
		}
		p.pruneRoutes(snap)
		p.balancers.Prune(func(id string) bool { return live[id] })
		p.metrics.forget(func(id string) bool { return live[id] })
		p.pool.prune(func(url string) bool { return hosts[url] })
	}()
}

// UpstreamKey identifies the runtime state of one upstream of one route. It
// is breaker.Key; health.Key has the same fields and converts to it.
type UpstreamKey = breaker.Key

// routeState is one route version as the request path uses it: the route,
// and what it needs of it beyond the spec, derived once on the route's
// first request instead of on every one: the resilience configuration as
// the resilience packages take it, its balancer, its upstreams' clients and
// keys, its metric series, its compiled transforms and its access-log
// fields. It is keyed by the *projections.Route, which every change of the
// route replaces, so a request never sees a state prepared for another
// version.
type routeState struct {
	*projections.Route

	breaker       *breaker.Config // nil: no circuit breaker
	retry         *retry.Policy   // nil: no retries
	fallback      *events.Fallback
	healthChecked bool
	timeout       time.Duration            // to the response, for every method but
	timeoutBy     map[string]time.Duration // these

	picker  balance.Picker
	targets []*target     // per upstream; nil where the URL is invalid
	keys    []UpstreamKey // per upstream, for breakers and health

	reqHeaders, respHeaders *headerEdits
	series                  *series  // nil without metrics
	logIDs                  []byte   // the access line's tenant and route fields
	logURLs                 [][]byte // per upstream: its URL as a JSON string
}

func (p *Proxy) stateOf(r *projections.Route) *routeState {
	if v, ok := p.routes.Load(r); ok {
		return v.(*routeState)
	}
	s := &routeState{
		Route:    r,
		breaker:  breakerConfig(r),
		retry:    retryPolicy(r),
		fallback: fallbackOf(r),
		// The registry keeps balancer state across versions of a route whose
		// upstreams did not change.
		picker:  p.balancers.Picker(r.ID, balancePolicy(r.LoadBalancing), weights(r.Upstreams)),
		targets: make([]*target, len(r.Upstreams)),
		keys:    make([]UpstreamKey, len(r.Upstreams)),
		logIDs:  appendLogIDs(nil, r.TenantID, r.ID),
		logURLs: make([][]byte, len(r.Upstreams)),
	}
	s.timeout, s.timeoutBy = timeouts(r)
	s.healthChecked = r.Resilience != nil && r.Resilience.HealthCheck != nil && r.Resilience.HealthCheck.Enabled
	for i, u := range r.Upstreams {
		s.targets[i], _ = p.pool.target(u.URL)
		s.keys[i] = UpstreamKey{TenantID: r.TenantID, RouteID: r.ID, Upstream: u.URL}
		s.logURLs[i] = appendJSONString(nil, u.URL)
	}
	if p.metrics != nil {
		s.series = p.metrics.series(r.TenantID, r.ID)
	}
	if t := r.Transform; t != nil {
		if t.Request != nil {
			s.reqHeaders = compileHeaderOps(t.Request.Headers)
		}
		if t.Response != nil {
			s.respHeaders = compileHeaderOps(t.Response.Headers)
		}
	}
	v, _ := p.routes.LoadOrStore(r, s)
	return v.(*routeState)
}

// timeoutFor is the route's upstream timeout for a method.
func (s *routeState) timeoutFor(method string) time.Duration {
	if d, ok := s.timeoutBy[method]; ok {
		return d
	}
	return s.timeout
}

// rewrite is the route's request path rewrite applied to path (path itself
// when the route has none).
func (s *routeState) rewrite(path string) string {
	if t := s.Transform; t != nil && t.Request != nil && t.Request.Path != nil && s.Rewrite != nil {
		return rewritePath(s.Rewrite, t.Request.Path.Replacement, path)
	}
	return path
}

// timeouts are a route's upstream timeouts: the default, and by method
// (upper case, as the request path compares them), without the ones equal
// to the default. A route without a timeout block has DefaultTimeoutMs.
func timeouts(r *projections.Route) (time.Duration, map[string]time.Duration) {
	ms := time.Millisecond
	def := events.DefaultTimeoutMs * ms
	res := r.Resilience
	if res == nil || res.Timeout == nil || !res.Timeout.Enabled {
		return def, nil
	}
	if res.Timeout.Default > 0 {
		def = time.Duration(res.Timeout.Default) * ms
	}
	var by map[string]time.Duration
	for m, v := range res.Timeout.ByMethod {
		if d := time.Duration(v) * ms; v > 0 && d != def {
			if by == nil {
				by = make(map[string]time.Duration)
			}
			by[strings.ToUpper(m)] = d
		}
	}
	return def, by
}

func fallbackOf(r *projections.Route) *events.Fallback {
	if r.Resilience == nil || r.Resilience.Fallback == nil || !r.Resilience.Fallback.Enabled {
		return nil
	}
	return r.Resilience.Fallback
}

// The route's configuration (the route model) as the resilience packages
// take it: derived here once per route version, not per request.

func breakerConfig(r *projections.Route) *breaker.Config {
	if r.Resilience == nil || r.Resilience.CircuitBreaker == nil || !r.Resilience.CircuitBreaker.Enabled {
		return nil
	}
	cb := r.Resilience.CircuitBreaker
	return &breaker.Config{FailureThreshold: cb.FailureThreshold, SuccessThreshold: cb.SuccessThreshold,
		OpenFor: time.Duration(cb.Timeout) * time.Millisecond}
}

func retryPolicy(r *projections.Route) *retry.Policy {
	if r.Resilience == nil || r.Resilience.Retry == nil || !r.Resilience.Retry.Enabled || r.Resilience.Retry.MaxRetries <= 0 {
		return nil
	}
	rt := r.Resilience.Retry
	return &retry.Policy{MaxRetries: rt.MaxRetries, BaseDelay: time.Duration(rt.BaseDelayMs) * time.Millisecond,
		MaxDelay: time.Duration(rt.MaxDelayMs) * time.Millisecond, RetryableStatusCodes: rt.RetryableStatusCodes,
		NonIdempotent: rt.RetryNonIdempotent}
}

func balancePolicy(name string) balance.Policy {
	switch name {
	case events.BalanceWeighted:
		return balance.Weighted
	case events.BalanceRandom:
		return balance.Random
	}
	return balance.RoundRobin
}

func weights(ups []events.Upstream) []int {
	w := make([]int, len(ups))
	for i, u := range ups {
		w[i] = u.Weight
	}
	return w
}

// pruneRoutes drops the states of route versions snap no longer holds.
func (p *Proxy) pruneRoutes(snap *projections.Snapshot) {
	live := make(map[*projections.Route]bool)
	for _, r := range snap.Routes() {
		live[r] = true
	}
	p.routes.Range(func(k, _ any) bool {
		if !live[k.(*projections.Route)] {
			p.routes.Delete(k)
		}
		return true
	})
}
