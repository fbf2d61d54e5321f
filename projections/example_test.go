package projections_test

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

// Replaying a log gives a snapshot that authenticates a key and matches
// requests against the tenant's routes.
func ExampleReplay() {
	key := projections.KeyHash([]byte("gw_example_key"))
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tenant, _ := json.Marshal(events.TenantCreatedData{Name: "acme", Status: events.TenantActive, APIKeyHash: hex.EncodeToString(key[:])})
	route := func(path string, typ events.PathType) json.RawMessage {
		b, _ := json.Marshal(events.RouteSpec{TenantID: "t1", Method: "*", Path: path, PathType: typ})
		return b
	}
	snap, err := projections.Replay([]events.Envelope{
		{Seq: 1, Type: events.TenantCreated, AggregateID: "t1", AggregateVersion: 1, OccurredAt: at, Data: tenant},
		{Seq: 2, Type: events.RouteCreated, AggregateID: "r1", TenantID: "t1", AggregateVersion: 1, OccurredAt: at, Data: route("/api", events.PathPrefix)},
		{Seq: 3, Type: events.RouteCreated, AggregateID: "r2", TenantID: "t1", AggregateVersion: 1, OccurredAt: at, Data: route("/api/users", events.PathPrefix)},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	t, _ := snap.Authenticate(key)
	for _, path := range []string{"/api/users/7", "/api/usersX", "/other"} {
		r, ok := snap.Match(t, "GET", path)
		if !ok {
			fmt.Println(path, "-> no route")
			continue
		}
		fmt.Println(path, "->", r.ID)
	}
	// Output:
	// /api/users/7 -> r2
	// /api/usersX -> r1
	// /other -> no route
}
