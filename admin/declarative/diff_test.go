package declarative

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

// TestDiffAgreesWithComparingExports holds Diff, which walks two states and
// looks only at what their digests say changed, to the plain way: export
// both states as documents and compare every tenant and route field by
// field. Random histories of creates, updates, deletes and key rotations;
// every pair of states of each.
func TestDiffAgreesWithComparingExports(t *testing.T) {
	t.Parallel()
	for seed := range uint64(8) {
		rng := rand.New(rand.NewPCG(seed, 18))
		h := newHistory(t)
		doc := Document{}
		var seqs []int64
		for step := range 12 {
			doc = mutate(rng, doc, step)
			h.apply(doc, "admin")
			if rng.IntN(3) == 0 && len(doc.Tenants) > 0 {
				rotate(t, h, doc.Tenants[rng.IntN(len(doc.Tenants))].ID)
			}
			seqs = append(seqs, int64(len(h.log)))
		}
		states := map[int64]*projections.Snapshot{0: projections.Empty()}
		for _, s := range seqs {
			states[s] = h.at(s)
		}
		seqs = append(seqs, 0)
		for _, a := range seqs {
			for _, b := range seqs {
				from, to := states[a], states[b]
				want := compare(Export(from), Export(to), prefixesOf(from), prefixesOf(to))
				if got, want := jsonOf(t, Diff(from, to)), jsonOf(t, want); got != want {
					t.Fatalf("seed %d: Diff(%d, %d) =\n%s\nwant\n%s", seed, a, b, got, want)
				}
			}
		}
	}
}

func prefixesOf(s *projections.Snapshot) map[string]string {
	out := map[string]string{}
	for _, t := range s.Tenants() {
		out[t.ID] = t.KeyPrefix
	}
	return out
}

// mutate returns a copy of doc with a few random changes: tenants and
// routes added, edited and removed.
func mutate(rng *rand.Rand, doc Document, step int) Document {
	next := Document{Tenants: slices.Clone(doc.Tenants), Routes: slices.Clone(doc.Routes)}
	for i := range 1 + rng.IntN(3) {
		id := fmt.Sprintf("0190a0b0-0000-7000-8000-%06d%06d", step, i)
		next.Tenants = append(next.Tenants, TenantConfig{ID: id, Name: "t" + id[len(id)-8:], Status: events.TenantActive})
	}
	for i := range next.Tenants {
		switch rng.IntN(4) {
		case 0:
			next.Tenants[i].Status = []events.TenantStatus{events.TenantActive, events.TenantSuspended}[rng.IntN(2)]
		case 1:
			next.Tenants[i].RateLimit = &events.RateLimit{Limit: 1 + rng.IntN(3), WindowMs: 1000}
		}
	}
	if rng.IntN(3) == 0 && len(next.Tenants) > 1 {
		gone := next.Tenants[rng.IntN(len(next.Tenants))].ID
		next.Tenants = slices.DeleteFunc(next.Tenants, func(t TenantConfig) bool { return t.ID == gone })
		next.Routes = slices.DeleteFunc(next.Routes, func(r RouteConfig) bool { return r.TenantID == gone })
	}
	for i := range 2 + rng.IntN(4) {
		owner := next.Tenants[rng.IntN(len(next.Tenants))].ID
		id := fmt.Sprintf("0190a0b0-0000-7000-9000-%06d%06d", step, i)
		next.Routes = append(next.Routes, route(id, owner, fmt.Sprintf("/s%d/r%d", step, i)))
	}
	for i := range next.Routes {
		switch rng.IntN(5) {
		case 0:
			next.Routes[i].Upstreams = []events.Upstream{{URL: fmt.Sprintf("http://127.0.0.1:%d", 9000+rng.IntN(3)), Weight: 1 + rng.IntN(2)}}
		case 1:
			next.Routes[i].Method = []string{"*", "GET", "POST"}[rng.IntN(3)]
		case 2:
			next.Routes[i].Resilience = &events.Resilience{Timeout: &events.Timeout{Enabled: true, Default: 100 * (1 + rng.IntN(3))}}
		}
	}
	if len(next.Routes) > 2 && rng.IntN(2) == 0 {
		next.Routes = slices.Delete(next.Routes, 0, 1)
	}
	return next
}

// rotate appends a key rotation of tenant id.
func rotate(t *testing.T, h *history, id string) {
	t.Helper()
	cur, ok := h.snap.Tenant(id)
	if !ok {
		return
	}
	_, hash, prefix := projections.NewAPIKey()
	data, _ := json.Marshal(events.TenantAPIKeyRotatedData{APIKeyHash: hash, APIKeyPrefix: prefix})
	h.append(events.Envelope{ID: fmt.Sprintf("rot-%d", len(h.log)), Type: events.TenantAPIKeyRotated, AggregateType: events.AggregateTenant,
		AggregateID: id, AggregateVersion: cur.Version + 1, TenantID: id, OccurredAt: t0, Data: data})
}
