package admin

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/tenantgate/gateway/projections"
)

// StateDocument is the JSON of GET /admin/state (and of `gateway replay`).
type StateDocument struct {
	At      int64                 `json:"at"`
	Tenants []*projections.Tenant `json:"tenants"`
	Routes  []*projections.Route  `json:"routes"`
	// AdminKeys are the live named admin keys, without secrets.
	AdminKeys []*projections.AdminKey `json:"adminKeys"`
}

// NewStateDocument is the state document of s: tenants, routes and admin
// keys by id.
func NewStateDocument(s *projections.Snapshot) StateDocument {
	return StateDocument{At: s.Seq(), Tenants: nonNil(s.Tenants()), Routes: nonNil(s.Routes()), AdminKeys: nonNil(s.AdminKeys())}
}

// scopedState is the part of the state document p may see: a scoped key
// sees its tenants and their routes, and no admin keys.
func scopedState(s *projections.Snapshot, p principal) StateDocument {
	doc := NewStateDocument(s)
	if p.scoped() {
		doc.Tenants = slices.DeleteFunc(doc.Tenants, func(t *projections.Tenant) bool { return !p.sees(t.ID) })
		doc.Routes = slices.DeleteFunc(doc.Routes, func(r *projections.Route) bool { return !p.sees(r.TenantID) })
		doc.AdminKeys = []*projections.AdminKey{}
	}
	return doc
}

// WriteStateDocument writes the JSON of NewStateDocument(s) to w one tenant
// and one route at a time, so the whole document is never in memory: the
// same bytes as json.Marshal, or, with indent, as a json.Encoder indenting
// by two spaces.
func WriteStateDocument(w io.Writer, s *projections.Snapshot, indent bool) error {
	return writeState(w, s.Seq(), s.Tenants(), s.Routes(), s.AdminKeys(), indent)
}

func writeState(w io.Writer, seq int64, tenants []*projections.Tenant, routes []*projections.Route, keys []*projections.AdminKey, indent bool) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	nl, in, sep := "", "", ":"
	if indent {
		nl, in, sep = "\n", "  ", ": "
	}
	fmt.Fprintf(bw, "{%s%s\"at\"%s%d,%s%s\"tenants\"%s", nl, in, sep, seq, nl, in, sep)
	if err := writeArray(bw, tenants, indent); err != nil {
		return err
	}
	fmt.Fprintf(bw, ",%s%s\"routes\"%s", nl, in, sep)
	if err := writeArray(bw, routes, indent); err != nil {
		return err
	}
	fmt.Fprintf(bw, ",%s%s\"adminKeys\"%s", nl, in, sep)
	if err := writeArray(bw, keys, indent); err != nil {
		return err
	}
	fmt.Fprintf(bw, "%s}", nl)
	if indent {
		_, _ = bw.WriteString("\n")
	}
	return bw.Flush()
}

// sendState answers with the state document of s, streamed: a state of
// 100,000 routes is tens of MiB of JSON that is never held whole.
func (a *API) sendState(c *fiber.Ctx, s *projections.Snapshot) error {
	doc := scopedState(s, principalOf(c))
	return a.sendStream(c, "state", func(w *bufio.Writer) error {
		return writeState(w, doc.At, doc.Tenants, doc.Routes, doc.AdminKeys, false)
	})
}

// releasingPast is write, followed by giving back the memory of the past
// state it was built from once history answers stop (quietRelease):
// rebuilding one and streaming it leave a few times the state's size as
// garbage, which the runtime would otherwise keep from the OS for minutes.
func (a *API) releasingPast(write func(*bufio.Writer) error) func(*bufio.Writer) error {
	return func(w *bufio.Writer) error {
		defer a.pastDone.soon()
		return write(w)
	}
}

// releaseQuiet is how long history answers must stop before their memory
// is given back. Given back after each, the next one of a burst (the
// console's state, diff, rollback preview) took twice as long at 100,000
// routes: the collection took cores from it, and the pages given back were
// faulted in again.
const releaseQuiet = time.Second

// quietRelease calls projections.ReleaseMemory once soon stops being called
// for releaseQuiet.
type quietRelease struct {
	mu    sync.Mutex
	timer *time.Timer
}

func (q *quietRelease) soon() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.timer == nil {
		q.timer = time.AfterFunc(releaseQuiet, projections.ReleaseMemory)
		return
	}
	q.timer.Reset(releaseQuiet)
}

// state handles GET /admin/state?at=n: the state right after event n, rebuilt
// from the nearest checkpoint at or below n and the events after it (at=0 is
// the empty state). An at
// beyond the store's head is a 400: that state does not exist yet. Without
// at: this instance's current snapshot.
func (a *API) state(c *fiber.Ctx) error {
	if c.Query("at") == "" {
		return a.sendState(c, a.proj.Snapshot())
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
	doc := scopedState(snap, principalOf(c))
	return a.sendStream(c, "state", a.releasingPast(func(w *bufio.Writer) error {
		return writeState(w, doc.At, doc.Tenants, doc.Routes, doc.AdminKeys, false)
	}))
}

// replay rebuilds the state after event at, starting from the nearest of
// this instance's snapshot, the state at the last checkpoint seq it passed
// (in memory), the states in also (such as the other end of a diff), the
// checkpoint states recent queries loaded, and the nearest checkpoint; so
// it costs the events since then, not the whole log.
// Skipped events leave the state as every instance has it.
func (a *API) replay(ctx context.Context, at int64, also ...*projections.Snapshot) (*projections.Snapshot, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	near := append(also, a.proj.Snapshot())
	if r, ok := a.proj.(retainer); ok {
		near = append(near, r.Retained())
	}
	return a.past.StateAt(ctx, at, near...)
}

// retainer is a projector that also holds the state at the last checkpoint
// seq it passed (*projections.Projector does).
type retainer interface {
	Retained() *projections.Snapshot
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
		"configHash":   snap.ConfigHash(),
	})
}
