package admin

import (
	"bufio"
	"context"
	"fmt"

	"github.com/gofiber/fiber/v2"
	"golang.org/x/sync/errgroup"

	"github.com/tenantgate/gateway/admin/declarative"
	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

// Declarative config and history (API.md, "Audit history and replay"):
//
//	GET  /admin/diff?from=A&to=B   field by field changes between the states after A and after B
//	POST /admin/apply              make the state equal a document; dryRun only lists the changes
//	POST /admin/rollback           make the state equal the state after toSeq (API keys excepted)
//
// apply and rollback plan against this instance's state caught up with the
// store, append one event per change in one append at that head (re-planned
// when another writer moved the head), wait until this instance has applied
// them, and answer {"changes", "appliedSeq", "apiKeys"}: apiKeys holds the
// keys of the tenants created (re-created by a rollback included), shown
// only this once. appliedSeq is null when nothing was appended.

// mountDeclarative registers the routes of this file; Mount calls it.
func (a *API) mountDeclarative(r fiber.Router, h func(fiber.Handler) []fiber.Handler) {
	r.Get("/admin/diff", h(a.declDiff)...)
	r.Post("/admin/apply", h(a.declApply)...)
	r.Post("/admin/rollback", h(a.declRollback)...)
	r.Get("/admin/openapi.json", h(a.openAPI)...)
}

// declDiff handles GET /admin/diff?from=A&to=B.
func (a *API) declDiff(c *fiber.Ctx) error {
	var details []Detail
	for _, name := range []string{"from", "to"} {
		if c.Query(name) == "" {
			details = append(details, Detail{Field: name, Message: "is required"})
		}
	}
	if len(details) > 0 {
		return fail(c, errValidation(details...))
	}
	from, err := intQuery(c, "from", 0, 0, 1<<62)
	if err != nil {
		return fail(c, err)
	}
	to, err := intQuery(c, "to", 0, 0, 1<<62)
	if err != nil {
		return fail(c, err)
	}
	ctx := c.UserContext()
	head, herr := a.head(ctx)
	if herr != nil {
		return fail(c, a.storeError(herr))
	}
	for _, q := range []struct {
		name string
		seq  int64
	}{{"from", from}, {"to", to}} {
		if q.seq > head {
			details = append(details, Detail{Field: q.name, Message: "is beyond the store's head"})
		}
	}
	if len(details) > 0 {
		return fail(c, errValidation(details...))
	}
	fromSnap, toSnap, rerr := a.replayPair(ctx, from, to)
	if rerr != nil {
		return fail(c, a.storeError(rerr))
	}
	changes := append(keyChanges(fromSnap, toSnap), declarative.Diff(fromSnap, toSnap)...)
	changes = scopeChanges(principalOf(c), changes, fromSnap, toSnap)
	return a.sendStream(c, "diff", a.releasingPast(func(w *bufio.Writer) error {
		return writeDiff(w, from, to, changes)
	}))
}

// replayPair rebuilds the states after from and after to. When to is a
// little after from, the events between cost less than loading a
// checkpoint, so to is built from from's state: they then share every
// aggregate those events left alone, which Diff skips at once. Otherwise
// the two are built side by side, each from its own nearest start.
func (a *API) replayPair(ctx context.Context, from, to int64) (fromSnap, toSnap *projections.Snapshot, err error) {
	if from <= to && projections.ReplayIsCheaper(a.proj.Snapshot().Size(), to-from) {
		if fromSnap, err = a.replay(ctx, from); err != nil {
			return nil, nil, err
		}
		toSnap, err = a.replay(ctx, to, fromSnap)
		return fromSnap, toSnap, err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) { fromSnap, err = a.replay(gctx, from); return err })
	g.Go(func() (err error) { toSnap, err = a.replay(gctx, to); return err })
	return fromSnap, toSnap, g.Wait()
}

// writeDiff writes the answer of GET /admin/diff: the bytes json.Marshal
// writes for {"changes", "from", "to"} (keys in that order, as for a map).
func writeDiff(w *bufio.Writer, from, to int64, changes []declarative.Change) error {
	_, _ = w.WriteString(`{"changes":`)
	if err := writeArray(w, changes, false); err != nil {
		return err
	}
	fmt.Fprintf(w, `,"from":%d,"to":%d}`, from, to)
	return w.Flush()
}

// declApply handles POST /admin/apply.
func (a *API) declApply(c *fiber.Ctx) error {
	who, err := actor(c)
	if err != nil {
		return fail(c, err)
	}
	doc, dryRun, err := decodeDocumentBody(c.Request().Body(), true)
	if err != nil {
		return fail(c, err)
	}
	p := principalOf(c)
	if !dryRun {
		if err := allow(p, opApplyWrite); err != nil {
			return fail(c, err)
		}
	}
	res, err := a.applyDocument(c.UserContext(), who, p, doc, nil, dryRun)
	if err != nil {
		return fail(c, err)
	}
	return a.sendResult(c, res)
}

// declRollback handles POST /admin/rollback {"toSeq": N}.
func (a *API) declRollback(c *fiber.Ctx) error {
	who, body, err := commandInput(c)
	if err != nil {
		return fail(c, err)
	}
	var req struct {
		ToSeq *int64 `json:"toSeq"`
	}
	if err := bind(body, &req); err != nil {
		return fail(c, err)
	}
	if req.ToSeq == nil || *req.ToSeq < 0 {
		return fail(c, errValidation(Detail{Field: "toSeq", Message: "is required and must be a seq >= 0"}))
	}
	toSeq := *req.ToSeq
	ctx := c.UserContext()
	// The target state is fixed history: replay it once, outside the retries.
	head, herr := a.head(ctx)
	if herr != nil {
		return fail(c, a.storeError(herr))
	}
	if toSeq > head {
		return fail(c, errValidation(Detail{Field: "toSeq", Message: "is beyond the store's head"}))
	}
	target, rerr := a.replay(ctx, toSeq)
	if rerr != nil {
		return fail(c, a.storeError(rerr))
	}
	p := principalOf(c)
	doc := scopeTarget(p, declarative.Export(target))
	if allow(p, "DELETE /admin/keys/:id") != nil {
		target = nil // a key that cannot manage keys leaves them alone
	}
	res, err := a.applyDocument(ctx, who, p, doc, target, false)
	if err != nil {
		return fail(c, err)
	}
	return a.sendResult(c, res)
}

// applyDocument plans the document against the current state and, unless
// dryRun, appends the events at the head it planned against. A scoped p
// changes only its tenants. With keysAt (a rollback's target) the keys
// created since are revoked first.
func (a *API) applyDocument(ctx context.Context, who string, p principal, asked declarative.Document, keysAt *projections.Snapshot, dryRun bool) (declarative.Result, *Error) {
	var res declarative.Result
	var head int64
	var appended int
	_, err := a.execute(ctx, func(snap *projections.Snapshot) (plan, *Error) {
		res, head, appended = declarative.Result{}, snap.Seq(), 0
		desired, serr := scopeDocument(p, asked, snap)
		if serr != nil {
			return plan{}, serr
		}
		changes, perr := declarative.Plan(snap, desired)
		if perr != nil {
			return plan{}, invalidDocument(perr)
		}
		var keyChanges []declarative.Change
		var revoke []events.Envelope
		if keysAt != nil {
			var kerr *Error
			if keyChanges, revoke, kerr = a.revocations(who, snap, keysAt); kerr != nil {
				return plan{}, kerr
			}
		}
		res.Changes = append(keyChanges, changes...)
		if dryRun || len(res.Changes) == 0 {
			return plan{}, nil
		}
		past, rerr := a.pastVersions(ctx, changes)
		if rerr != nil {
			return plan{}, a.storeError(rerr)
		}
		batch, berr := declarative.Events(snap, changes, who, a.now(), past)
		if berr != nil {
			a.log.Error("admin: apply could not build its events", "err", berr)
			return plan{}, errInternal
		}
		evs := append(revoke, batch.Events...)
		res.APIKeys, appended = batch.Keys, len(evs)
		return plan{head: snap.Seq(), events: evs}, nil
	})
	if err != nil {
		return declarative.Result{}, err
	}
	if appended > 0 {
		// The append succeeded at ExpectedHead head, so its events are
		// head+1 .. head+appended.
		seq := head + int64(appended)
		res.AppliedSeq = &seq
	}
	res.Changes = nonNil(res.Changes)
	res.APIKeys = nonNil(res.APIKeys)
	return res, nil
}

// pastVersions looks up the last version of each aggregate the changes
// create, in case it existed before (a rollback re-creating it): the store
// keeps (aggregateId, version) unique.
func (a *API) pastVersions(ctx context.Context, changes []declarative.Change) (map[string]int64, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	return declarative.PastVersions(ctx, a.store, declarative.Recreated(changes))
}
