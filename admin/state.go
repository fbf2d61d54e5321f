package admin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/tenantgate/gateway/admin/declarative"
	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

// StateDocument is the JSON of GET /admin/state (and of `gateway replay`).
type StateDocument struct {
	At      int64                 `json:"at"`
	Tenants []*projections.Tenant `json:"tenants"`
	Routes  []*projections.Route  `json:"routes"`
}

// NewStateDocument is the state document of s: tenants and routes by id.
func NewStateDocument(s *projections.Snapshot) StateDocument {
	return StateDocument{At: s.Seq(), Tenants: nonNil(s.Tenants()), Routes: nonNil(s.Routes())}
}

// state handles GET /admin/state?at=n: the state right after event n, rebuilt
// by replaying events 1..n from the store (at=0 is the empty state). An at
// beyond the store's head is a 400: that state does not exist yet. Without
// at: this instance's current snapshot.
func (a *API) state(c *fiber.Ctx) error {
	if c.Query("at") == "" {
		return c.JSON(NewStateDocument(a.proj.Snapshot()))
	}
	at, err := intQuery(c, "at", 0, 0, 1<<62)
	if err != nil {
		return fail(c, err)
	}
	head, herr := a.head(c.UserContext())
	if herr != nil {
		return fail(c, a.storeError(herr))
	}
	if at > head {
		return fail(c, errValidation(Detail{Field: "at", Message: "is beyond the store's head"}))
	}
	snap, rerr := a.replay(c.UserContext(), at)
	if rerr != nil {
		return fail(c, a.storeError(rerr))
	}
	return c.JSON(NewStateDocument(snap))
}

// replay rebuilds the state after event at.
func (a *API) replay(ctx context.Context, at int64) (*projections.Snapshot, error) {
	if at == 0 {
		return projections.Empty(), nil
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	// Skipped events leave the state as every instance has it.
	return projections.ReplayStore(ctx, a.store, nil, at, func(ev events.Envelope, err error) {
		a.log.Warn("admin: replay skipped an event", "at", at, "seq", ev.Seq, "err", err)
	})
}

func (a *API) head(ctx context.Context) (int64, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	h, err := a.store.Head(ctx)
	if err == nil {
		a.lastHead.Store(h)
	}
	return h, err
}

// status handles GET /admin/status. With the store down it still answers
// 200, reporting the last head it saw.
func (a *API) status(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(c.UserContext(), 2*time.Second)
	defer cancel()
	head, err := a.head(ctx)
	if err != nil {
		head = a.lastHead.Load()
	}
	snap := a.proj.Snapshot() // appliedSeq and the hashes from one snapshot
	return c.JSON(fiber.Map{
		"instanceId":   a.cfg.InstanceID,
		"appliedSeq":   snap.Seq(),
		"storeHeadSeq": head,
		"bus":          a.busKind,
		"store":        a.store.Kind(),
		"ready":        a.proj.Ready(),
		"stateHash":    snap.StateHash(),
		"configHash":   configHash(snap),
	})
}

// configHash digests the declarative configuration, what `gateway export`
// writes (ids, names, statuses, limits, route specs; no keys, versions or
// timestamps). stateHash tells whether two instances hold the same state at
// the same seq; configHash tells whether two stores hold the same
// configuration whatever their histories, e.g. after export, wipe and apply,
// or after a rollback.
func configHash(s *projections.Snapshot) string {
	b, err := json.Marshal(declarative.Export(s))
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
