package admin

import (
	"context"
	"log/slog"

	"github.com/gofiber/fiber/v2"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/events/instances"
)

// Instances lists the cluster's live instances for GET /admin/instances;
// *instances.Registry satisfies it.
type Instances interface {
	List(ctx context.Context) instances.List
}

var _ Instances = (*instances.Registry)(nil)

// listInstances handles GET /admin/instances: every instance whose heartbeat
// is at most 10 s old, this one included (with its live state), sorted by
// id. With Redis unreachable it lists this instance alone and says
// "partial": true.
func (a *API) listInstances(c *fiber.Ctx) error {
	return c.JSON(a.cluster.List(c.UserContext()))
}

// soloInstances is the list of an API given no Instances: this instance
// alone, as the embedded gateway is.
func soloInstances(id string, proj Projector, store events.Store, log *slog.Logger) (Instances, error) {
	if id == "" {
		id = "local"
	}
	return instances.New(instances.Config{InstanceID: id, Log: store, Self: SelfReport(proj, proj.Ready)}, nil, log)
}

// SelfReport is what an instance's heartbeat says of it: the appliedSeq and
// stateHash of /admin/status (from one snapshot), and ready as serving says.
func SelfReport(proj Projector, serving func() bool) func() instances.Self {
	return func() instances.Self {
		s := proj.Snapshot()
		return instances.Self{AppliedSeq: s.Seq(), StateHash: s.StateHash(), Ready: serving()}
	}
}
