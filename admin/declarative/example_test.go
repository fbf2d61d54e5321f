package declarative_test

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/tenantgate/gateway/admin/declarative"
	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

// Plan a document against a state, build its events, and plan again after
// applying them: nothing is left to do.
func ExamplePlan() {
	doc := declarative.Document{Tenants: []declarative.TenantConfig{
		{ID: "0190a0b0-7c1e-7a3d-9a40-3f1c2b5d6e01", Name: "acme", Status: events.TenantActive},
	}}
	state := projections.Empty()
	changes, _ := declarative.Plan(state, doc)
	out, _ := json.Marshal(changes)
	fmt.Println(string(out))

	batch, _ := declarative.Events(state, changes, "alice", time.Now(), nil)
	for i := range batch.Events {
		batch.Events[i].Seq = state.Seq() + int64(i) + 1 // the store assigns seq
	}
	state, _ = projections.ApplyBatch(state, batch.Events, nil)
	again, _ := declarative.Plan(state, doc)
	fmt.Println(len(batch.Keys), "key issued;", len(again), "changes left")
	// Output:
	// [{"aggregateType":"tenant","aggregateId":"0190a0b0-7c1e-7a3d-9a40-3f1c2b5d6e01","change":"created","fields":{"name":{"from":null,"to":"acme"},"status":{"from":null,"to":"active"}}}]
	// 1 key issued; 0 changes left
}
