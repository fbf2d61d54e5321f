package main

import (
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
	"github.com/tenantgate/gateway/resilience/health"
)

func TestHealthTargets(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	key := projections.KeyHash([]byte("gw_targets_test"))
	tenant, _ := json.Marshal(events.TenantCreatedData{Name: "acme", Status: events.TenantActive, APIKeyHash: hex.EncodeToString(key[:])})
	route := func(path string, res *events.Resilience, upstreams ...string) json.RawMessage {
		spec := events.RouteSpec{TenantID: "t1", Method: "*", Path: path, PathType: events.PathPrefix, LoadBalancing: events.BalanceRoundRobin, Resilience: res}
		for _, u := range upstreams {
			spec.Upstreams = append(spec.Upstreams, events.Upstream{URL: u, Weight: 1})
		}
		b, _ := json.Marshal(spec)
		return b
	}
	checked := &events.Resilience{HealthCheck: &events.HealthCheck{Enabled: true, Endpoint: "/status", IntervalMs: 1000, TimeoutMs: 500, HealthyThreshold: 1, UnhealthyThreshold: 2}}
	off := &events.Resilience{HealthCheck: &events.HealthCheck{Enabled: false, Endpoint: "/status"}}
	snap, err := projections.Replay([]events.Envelope{
		{Seq: 1, Type: events.TenantCreated, AggregateType: events.AggregateTenant, AggregateID: "t1", AggregateVersion: 1, OccurredAt: at, Data: tenant},
		{Seq: 2, Type: events.RouteCreated, AggregateType: events.AggregateRoute, AggregateID: "r1", TenantID: "t1", AggregateVersion: 1, OccurredAt: at,
			Data: route("/a", checked, "http://10.0.0.1:9001/base", "https://10.0.0.2")},
		{Seq: 3, Type: events.RouteCreated, AggregateType: events.AggregateRoute, AggregateID: "r2", TenantID: "t1", AggregateVersion: 1, OccurredAt: at,
			Data: route("/b", off, "http://10.0.0.3:9003")},
		{Seq: 4, Type: events.RouteCreated, AggregateType: events.AggregateRoute, AggregateID: "r3", TenantID: "t1", AggregateVersion: 1, OccurredAt: at,
			Data: route("/c", nil, "http://10.0.0.4:9004")},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := healthTargets(snap)
	check := health.Check{Interval: time.Second, Timeout: 500 * time.Millisecond, HealthyThreshold: 1, UnhealthyThreshold: 2}
	want := []health.Target{
		{Key: health.Key{TenantID: "t1", RouteID: "r1", Upstream: "http://10.0.0.1:9001/base"}, URL: "http://10.0.0.1:9001/status", Check: check},
		{Key: health.Key{TenantID: "t1", RouteID: "r1", Upstream: "https://10.0.0.2"}, URL: "https://10.0.0.2/status", Check: check},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d targets %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("target %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if ts := healthTargets(projections.Empty()); len(ts) != 0 {
		t.Fatalf("empty snapshot: %v", ts)
	}
}
