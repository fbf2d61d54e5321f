package declarative

import (
	"fmt"
	"testing"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

// bigState is a state of 1,000 tenants with 5 routes each, built through
// Plan and Events like an apply would.
func bigState(b *testing.B) (*projections.Snapshot, Document) {
	b.Helper()
	var doc Document
	for i := range 1000 {
		tid := fmt.Sprintf("0190a0b0-0000-7000-8000-%012d", i)
		doc.Tenants = append(doc.Tenants, TenantConfig{ID: tid, Name: fmt.Sprintf("tenant-%d", i), Status: events.TenantActive,
			RateLimit: &events.RateLimit{Limit: 100, WindowMs: 1000}})
		for j := range 5 {
			r := route(fmt.Sprintf("0190a0b1-0000-7000-8000-%08d%04d", i, j), tid, fmt.Sprintf("/api/%d", j))
			r.Resilience = &events.Resilience{Retry: &events.Retry{Enabled: true, MaxRetries: 3, BaseDelayMs: 100, MaxDelayMs: 2000, RetryableStatusCodes: []int{502, 503}}}
			doc.Routes = append(doc.Routes, r)
		}
	}
	changes, err := Plan(projections.Empty(), doc)
	if err != nil {
		b.Fatal(err)
	}
	batch, err := Events(projections.Empty(), changes, "bench", t0, nil)
	if err != nil {
		b.Fatal(err)
	}
	for i := range batch.Events {
		batch.Events[i].Seq = int64(i) + 1
	}
	snap, err := projections.Replay(batch.Events)
	if err != nil {
		b.Fatal(err)
	}
	return snap, doc
}

// BenchmarkPlanNoChanges is the cost of applying an unchanged 6,000-item
// document: what a GitOps loop pays on every run.
func BenchmarkPlanNoChanges(b *testing.B) {
	snap, doc := bigState(b)
	b.ReportAllocs()
	for b.Loop() {
		changes, err := Plan(snap, doc)
		if err != nil || len(changes) != 0 {
			b.Fatalf("%d changes, %v", len(changes), err)
		}
	}
}

// BenchmarkPlanOneChange plans a document that differs in one route.
func BenchmarkPlanOneChange(b *testing.B) {
	snap, doc := bigState(b)
	doc.Routes[42].Path = "/changed"
	b.ReportAllocs()
	for b.Loop() {
		changes, err := Plan(snap, doc)
		if err != nil || len(changes) != 1 {
			b.Fatalf("%d changes, %v", len(changes), err)
		}
	}
}

// BenchmarkDiffEmptyToFull diffs the empty state with 6,000 items.
func BenchmarkDiffEmptyToFull(b *testing.B) {
	snap, _ := bigState(b)
	empty := projections.Empty()
	b.ReportAllocs()
	for b.Loop() {
		if changes := Diff(empty, snap); len(changes) != 6000 {
			b.Fatalf("%d changes", len(changes))
		}
	}
}

// BenchmarkExport exports 6,000 items.
func BenchmarkExport(b *testing.B) {
	snap, _ := bigState(b)
	b.ReportAllocs()
	for b.Loop() {
		Export(snap)
	}
}
