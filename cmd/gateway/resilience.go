package main

import (
	"context"
	"crypto/x509"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/tenantgate/gateway/admin"
	"github.com/tenantgate/gateway/projections"
	"github.com/tenantgate/gateway/proxy"
	"github.com/tenantgate/gateway/resilience/breaker"
	"github.com/tenantgate/gateway/resilience/health"
	"github.com/tenantgate/gateway/resilience/ratelimit"
	"github.com/tenantgate/gateway/resilience/retry"
)

// resilienceParts are the runtime-state mechanisms: local when embedded,
// shared through Redis when REDIS_URL is set.
type resilienceParts struct {
	limiter  ratelimit.Limiter
	breakers breaker.Breakers
	health   health.Checker
	budgets  *retry.Budgets
	loops    []func(context.Context) error
}

// upstreamRoots (nil: the system roots) verify the health checks of https
// upstreams, as they verify the proxied requests.
func newResilience(cfg Config, rdb redis.UniversalClient, projector *projections.Projector, reg prometheus.Registerer, upstreamRoots *x509.CertPool, log *slog.Logger) (*resilienceParts, error) {
	parts := &resilienceParts{budgets: retry.NewBudgets(retry.BudgetConfig{})}
	if rdb == nil {
		limiter, err := ratelimit.NewLocalWith(ratelimit.LocalConfig{Registerer: reg})
		if err != nil {
			return nil, err
		}
		breakers, err := breaker.NewLocalWith(breaker.LocalConfig{Registerer: reg})
		if err != nil {
			return nil, err
		}
		checker, err := health.NewLocal(health.Config{Registerer: reg, RootCAs: upstreamRoots}, log)
		if err != nil {
			return nil, err
		}
		parts.limiter, parts.breakers, parts.health = limiter, breakers, checker
		parts.loops = append(parts.loops, checker.Run, followHealthTargets(projector, checker))
		return parts, nil
	}
	limiter, err := ratelimit.NewRedis(rdb, ratelimit.RedisConfig{
		Prefix: cfg.RedisPrefix, FailClosed: cfg.RateLimitFailClosed, InstanceID: cfg.InstanceID, Registerer: reg,
	}, log)
	if err != nil {
		return nil, err
	}
	breakers, err := breaker.NewShared(rdb, breaker.SharedConfig{Prefix: cfg.RedisPrefix, InstanceID: cfg.InstanceID, Registerer: reg}, log)
	if err != nil {
		return nil, err
	}
	checker, err := health.NewShared(rdb, health.SharedConfig{
		Config: health.Config{Registerer: reg, RootCAs: upstreamRoots}, Prefix: cfg.RedisPrefix, InstanceID: cfg.InstanceID,
	}, log)
	if err != nil {
		return nil, err
	}
	parts.limiter, parts.breakers, parts.health = limiter, breakers, checker
	parts.loops = append(parts.loops, breakers.Run, checker.Run, followHealthTargets(projector, checker))
	return parts, nil
}

// followHealthTargets is a loop that tells checker the health targets of
// every snapshot the projector publishes, so that a new or changed target is
// probed at once and the checker never polls for them. A burst of events is
// one update.
func followHealthTargets(projector *projections.Projector, checker interface{ SetTargets([]health.Target) }) func(context.Context) error {
	return func(ctx context.Context) error {
		for {
			changed := projector.Changed()
			checker.SetTargets(healthTargets(projector.Snapshot()))
			select {
			case <-ctx.Done():
				return nil
			case <-changed:
			}
		}
	}
}

// healthTargets lists every upstream of every route of s with an enabled
// health check, as the health package takes them.
func healthTargets(s *projections.Snapshot) []health.Target {
	var out []health.Target
	for _, r := range s.Routes() {
		if r.Resilience == nil || r.Resilience.HealthCheck == nil || !r.Resilience.HealthCheck.Enabled {
			continue
		}
		hc := r.Resilience.HealthCheck
		check := health.Check{
			Interval:           time.Duration(hc.IntervalMs) * time.Millisecond,
			Timeout:            time.Duration(hc.TimeoutMs) * time.Millisecond,
			HealthyThreshold:   hc.HealthyThreshold,
			UnhealthyThreshold: hc.UnhealthyThreshold,
		}
		for _, up := range r.Upstreams {
			u, err := health.ProbeURL(up.URL, hc.Endpoint)
			if err != nil {
				continue // validated on write; nothing sensible to probe
			}
			out = append(out, health.Target{Key: health.Key{TenantID: r.TenantID, RouteID: r.ID, Upstream: up.URL}, URL: u, Check: check})
		}
	}
	return out
}

func (r *resilienceParts) proxyDeps(snapshots proxy.Snapshots, reg prometheus.Registerer) proxy.Deps {
	return proxy.Deps{
		Snapshots: snapshots,
		Limiter:   r.limiter,
		Breakers:  r.breakers,
		Health:    r.health,
		Budgets:   r.budgets,
		Metrics:   reg,
	}
}

// upstreamStates answers admin's GET /admin/routes/:id/upstreams from the
// same local copies of health and breaker state the proxy reads.
type upstreamStates struct {
	breakers breaker.Breakers
	health   health.Checker
}

func (u upstreamStates) UpstreamState(tenantID, routeID, upstreamURL string) admin.UpstreamState {
	return admin.UpstreamState{
		Healthy: u.health.Healthy(health.Key{TenantID: tenantID, RouteID: routeID, Upstream: upstreamURL}),
		Breaker: u.breakers.State(breaker.Key{TenantID: tenantID, RouteID: routeID, Upstream: upstreamURL}).String(),
	}
}
