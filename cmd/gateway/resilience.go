package main

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

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

func newResilience(cfg Config, rdb redis.UniversalClient, projector *projections.Projector, reg prometheus.Registerer, log *slog.Logger) (*resilienceParts, error) {
	targets := health.TargetsFromSnapshot(projector.Snapshot)
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
		checker, err := health.NewLocal(health.Config{Registerer: reg}, targets, log)
		if err != nil {
			return nil, err
		}
		parts.limiter, parts.breakers, parts.health = limiter, breakers, checker
		parts.loops = append(parts.loops, checker.Run)
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
		Config: health.Config{Registerer: reg}, Prefix: cfg.RedisPrefix, InstanceID: cfg.InstanceID,
	}, targets, log)
	if err != nil {
		return nil, err
	}
	parts.limiter, parts.breakers, parts.health = limiter, breakers, checker
	parts.loops = append(parts.loops, breakers.Run, checker.Run)
	return parts, nil
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
