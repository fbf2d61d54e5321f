package main

import (
	"log/slog"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/tenantgate/gateway/admin"
	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/events/instances"
	"github.com/tenantgate/gateway/projections"
)

// newInstanceRoll is this instance's entry in GET /admin/instances: its
// heartbeats in Redis (<prefix>instances), or itself alone when embedded.
// Ready is what /ready says.
func newInstanceRoll(cfg Config, rdb redis.UniversalClient, projector *projections.Projector, store events.Store,
	draining *atomic.Bool, log *slog.Logger) (*instances.Registry, error) {
	return instances.New(instances.Config{
		InstanceID: cfg.InstanceID,
		Key:        cfg.RedisPrefix + "instances",
		Log:        store,
		Self:       admin.SelfReport(projector, func() bool { return projector.Ready() && !draining.Load() }),
	}, rdb, log)
}
