package admin

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/tenantgate/gateway/admin/declarative"
	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

// stateOfTenantT1 builds a state event by event, each of tenant t1.
type stateOfTenantT1 struct {
	s   *projections.Snapshot
	seq int64
}

func (st *stateOfTenantT1) add(typ events.Type, id string, data any) {
	raw, _ := json.Marshal(data)
	st.seq++
	st.s, _ = projections.Apply(st.s, events.Envelope{Seq: st.seq, ID: fmt.Sprint(st.seq), Type: typ, AggregateID: id, AggregateVersion: 1,
		TenantID: "t1", OccurredAt: time.Unix(st.seq, 0), Data: raw})
}

// TestWriteStateDocumentSameBytes: the streamed state document is byte for
// byte what json.Marshal (the admin API) and an indenting json.Encoder
// (gateway replay) write for the whole document, empty or not, with
// characters that JSON escapes.
func TestWriteStateDocumentSameBytes(t *testing.T) {
	t.Parallel()
	st := &stateOfTenantT1{s: projections.Empty()}
	add := st.add
	check := func(what string) {
		t.Helper()
		for _, indent := range []bool{false, true} {
			var want bytes.Buffer
			if indent {
				enc := json.NewEncoder(&want)
				enc.SetIndent("", "  ")
				_ = enc.Encode(NewStateDocument(st.s))
			} else {
				b, _ := json.Marshal(NewStateDocument(st.s))
				want.Write(b)
			}
			var got bytes.Buffer
			if err := WriteStateDocument(&got, st.s, indent); err != nil {
				t.Fatal(err)
			}
			if got.String() != want.String() {
				t.Fatalf("%s, indent %v:\n%s\nwant\n%s", what, indent, got.String(), want.String())
			}
		}
	}
	check("empty")
	add(events.TenantCreated, "t1", events.TenantCreatedData{Name: "a<b>&\u2028", Status: events.TenantActive, APIKeyHash: fmt.Sprintf("%064d", 0)})
	check("one tenant")
	for i := range 5 {
		add(events.RouteCreated, fmt.Sprint("r", i), events.RouteSpec{TenantID: "t1", Path: fmt.Sprintf("/p%d", i), PathType: events.PathPrefix,
			Upstreams: []events.Upstream{{URL: "http://u", Weight: 1}}})
	}
	check("routes")
	// Maps (written with sorted keys), nested blocks and escapes in every
	// kind of string, as go-json must write them too.
	add(events.RouteCreated, "r-full", events.RouteSpec{TenantID: "t1", Method: "POST", Path: "/full", PathType: events.PathPrefix,
		Upstreams: []events.Upstream{{URL: "http://u/<x>?a=1&b=2", Weight: 3}, {URL: "http://v", Weight: 1}},
		Resilience: &events.Resilience{
			Retry:    &events.Retry{Enabled: true, MaxRetries: 2, RetryableStatusCodes: []int{502, 503}},
			Timeout:  &events.Timeout{Enabled: true, Default: 100, ByMethod: map[string]int{"POST": 9, "GET": 5, "DELETE": 7}},
			Fallback: &events.Fallback{Enabled: true, StatusCode: 503, ContentType: "text/html", Body: "<b>\"down\"</b>\n\t\u2029\x01 é"},
		},
		Transform: &events.Transform{Request: &events.RequestTransform{Headers: &events.HeaderOps{
			Set: map[string]string{"X-B": "2", "X-A": "1 & 2", "X-C": "<3>"}, Remove: []string{"Cookie", "X-Z"}}}},
	})
	if r, ok := st.s.Route("r-full"); !ok || r.Transform == nil {
		t.Fatal("the route with every block was not applied")
	}
	check("a route with every block")
	// Enough routes for several runs encoded side by side.
	for i := range 3*arrayRun + 7 {
		add(events.RouteCreated, fmt.Sprintf("r-many-%04d", i), events.RouteSpec{TenantID: "t1", Path: fmt.Sprintf("/many/%d", i), PathType: events.PathExact,
			Upstreams: []events.Upstream{{URL: "http://u", Weight: 1 + i%3}}})
	}
	check("routes in several runs")
}

// TestWriteDiffSameBytes: the streamed diff is what json.Marshal writes for
// the map the answer once was, with no changes or with several runs of them.
func TestWriteDiffSameBytes(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 2*arrayRun + 3} {
		var changes []declarative.Change
		for i := range n {
			changes = append(changes, declarative.Change{AggregateType: events.AggregateRoute, AggregateID: fmt.Sprint("r", i), Change: declarative.Updated,
				Fields: map[string]declarative.FieldChange{"path": {From: "/a", To: fmt.Sprintf("/b/%d<&>", i)}, "method": {From: nil, To: "GET"}}})
		}
		want, _ := json.Marshal(map[string]any{"from": 3, "to": 1 << 40, "changes": nonNil(changes)})
		var got bytes.Buffer
		w := bufio.NewWriter(&got)
		if err := writeDiff(w, 3, 1<<40, changes); err != nil {
			t.Fatal(err)
		}
		if got.String() != string(want) {
			t.Fatalf("%d changes:\n%s\nwant\n%s", n, got.String(), want)
		}
	}
}

// TestStoreErrorTellsATimeoutFromAnOutage: a reachable store that ran past
// its deadline is 504 store_timeout; an unreachable one 503 store_unavailable.
func TestStoreErrorTellsATimeoutFromAnOutage(t *testing.T) {
	t.Parallel()
	a := &API{log: slog.New(slog.DiscardHandler)}
	tests := []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"timeout", fmt.Errorf("events: append: %w", events.ErrTimeout), 504, "store_timeout"},
		{"unavailable", fmt.Errorf("events: append: %w", events.ErrUnavailable), 503, "store_unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if e := a.storeError(tt.err); e.Status != tt.status || e.Code != tt.code {
				t.Fatalf("storeError = %d %s, want %d %s", e.Status, e.Code, tt.status, tt.code)
			}
		})
	}
}

// BenchmarkWriteState writes the state document of 20,000 routes.
func BenchmarkWriteState(b *testing.B) {
	st := &stateOfTenantT1{s: projections.Empty()}
	add := st.add
	add(events.TenantCreated, "t1", events.TenantCreatedData{Name: "a", Status: events.TenantActive, APIKeyHash: fmt.Sprintf("%064d", 0)})
	for i := range 20_000 {
		add(events.RouteCreated, fmt.Sprintf("r-%05d", i), events.RouteSpec{TenantID: "t1", Method: "GET", Path: fmt.Sprintf("/svc/%d", i), PathType: events.PathPrefix,
			Upstreams:  []events.Upstream{{URL: "http://10.0.0.1:8080", Weight: 2}, {URL: "http://10.0.0.2:8080", Weight: 1}},
			Resilience: &events.Resilience{Retry: &events.Retry{Enabled: true, MaxRetries: 2, RetryableStatusCodes: []int{502, 503}}}})
	}
	var n int64
	for b.Loop() {
		var w countingWriter
		if err := WriteStateDocument(&w, st.s, false); err != nil {
			b.Fatal(err)
		}
		n = int64(w)
	}
	b.SetBytes(n)
}

type countingWriter int64

func (w *countingWriter) Write(p []byte) (int, error) {
	*w += countingWriter(len(p))
	return len(p), nil
}
