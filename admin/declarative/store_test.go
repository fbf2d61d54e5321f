package declarative

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	gojson "github.com/goccy/go-json"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/migrations"
)

func sqliteStore(t *testing.T) *events.SQLStore {
	t.Helper()
	store, err := events.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	if err := migrations.Migrate(context.Background(), store.DB()); err != nil {
		t.Fatal(err)
	}
	return store
}

func TestApplyToStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := sqliteStore(t)
	doc := sampleDoc()

	dry, err := ApplyToStore(ctx, store, doc, ApplyOptions{Actor: "cli", DryRun: true})
	if err != nil || len(dry.Changes) != 5 || dry.AppliedSeq != nil || len(dry.APIKeys) != 0 {
		t.Fatalf("dry run = %+v, %v", dry, err)
	}
	if h, _ := store.Head(ctx); h != 0 {
		t.Fatalf("dry run appended %d events", h)
	}

	res, err := ApplyToStore(ctx, store, doc, ApplyOptions{Actor: "cli"})
	if err != nil || res.AppliedSeq == nil || *res.AppliedSeq != 5 || len(res.APIKeys) != 2 {
		t.Fatalf("apply = %s, %v", jsonOf(t, res), err)
	}
	snap, err := Replay(ctx, store, -1)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := Plan(snap, doc); len(again) != 0 {
		t.Fatalf("after apply, plan = %v", summary(again))
	}
	res, err = ApplyToStore(ctx, store, doc, ApplyOptions{Actor: "cli"})
	if err != nil || len(res.Changes) != 0 || res.AppliedSeq != nil {
		t.Fatalf("second apply = %s, %v", jsonOf(t, res), err)
	}
	if h, _ := store.Head(ctx); h != 5 {
		t.Fatalf("head = %d after a second apply, want 5", h)
	}

	empty, err := Replay(ctx, store, 0)
	if err != nil || len(empty.Tenants()) != 0 {
		t.Fatalf("Replay(0) = %v tenants, %v", len(empty.Tenants()), err)
	}
	if _, err := Replay(ctx, store, 6); err == nil {
		t.Fatal("Replay beyond the head succeeded")
	}
	bad := doc
	bad.Routes = append([]RouteConfig{route(routeA1, "0190a0b0-0000-7000-8000-0000000000ff", "/x")}, doc.Routes[1:]...)
	var inv *InvalidError
	if _, err := ApplyToStore(ctx, store, bad, ApplyOptions{Actor: "cli"}); !errors.As(err, &inv) {
		t.Fatalf("apply of an inconsistent document: %v, want *InvalidError", err)
	}
}

// racingStore lets another writer append just before the first append.
type racingStore struct {
	events.Store
	raced atomic.Bool
	other func()
}

func (s *racingStore) Append(ctx context.Context, req events.AppendRequest) ([]events.Envelope, error) {
	if s.raced.CompareAndSwap(false, true) {
		s.other()
	}
	return s.Store.Append(ctx, req)
}

func TestApplyToStoreReplansWhenAnotherWriterMovedTheHead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	inner := sqliteStore(t)
	if _, err := ApplyToStore(ctx, inner, sampleDoc(), ApplyOptions{Actor: "setup"}); err != nil {
		t.Fatal(err)
	}
	store := &racingStore{Store: inner}
	store.other = func() {
		// Another admin renames beta meanwhile.
		snap, err := Replay(ctx, inner, -1)
		if err != nil {
			t.Error(err)
			return
		}
		b, _ := snap.Tenant(tenantB)
		data, _ := json.Marshal(events.TenantUpdatedData{Name: events.NewPatch("beta-by-other")})
		_, err = inner.Append(ctx, events.AppendRequest{ExpectedHead: events.AnyHead, Events: []events.Envelope{{
			ID: "other", Type: events.TenantUpdated, AggregateType: events.AggregateTenant, AggregateID: tenantB,
			AggregateVersion: b.Version + 1, TenantID: tenantB, Actor: "other", OccurredAt: t0, Data: data,
		}}})
		if err != nil {
			t.Error(err)
		}
	}
	doc := sampleDoc()
	doc.Tenants[1].Name = "acme-2"
	res, err := ApplyToStore(ctx, store, doc, ApplyOptions{Actor: "cli"})
	if err != nil {
		t.Fatal(err)
	}
	// Planned again at the new head: beta's name is put back too.
	if got := strings.Join(summary(res.Changes), ","); got != "updated tenant 0a,updated tenant 0b" {
		t.Fatalf("changes = %s", got)
	}
	if *res.AppliedSeq != 8 {
		t.Fatalf("appliedSeq = %d, want 8 (5 + the other writer's 1 + 2)", *res.AppliedSeq)
	}
	snap, _ := Replay(ctx, inner, -1)
	if again, _ := Plan(snap, doc); len(again) != 0 {
		t.Fatalf("after apply, plan = %v", summary(again))
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	t.Parallel()
	doc := sampleDoc()
	doc.Routes[0].Resilience = &events.Resilience{
		Fallback: &events.Fallback{Enabled: true, StatusCode: 503, ContentType: "text/plain", Body: "line 1\nline: 2\n  - \"three\"\n"},
		Timeout:  &events.Timeout{Enabled: true, Default: 1000, ByMethod: map[string]int{"GET": 500}},
	}
	doc.Routes[0].Transform = &events.Transform{Request: &events.RequestTransform{
		Headers: &events.HeaderOps{Set: map[string]string{"X-Bool": "true", "X-Num": "0123", "X-Null": "null", "X-Tmpl": "${tenant.id}"}},
		Path:    &events.PathRewrite{Pattern: "^/api/(.*)$", Replacement: "/v2/$1 # not a comment"},
	}}
	doc.Tenants[1].Name = "yes" // a YAML 1.1 boolean, must stay a string

	y, err := MarshalYAML(doc)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"rateLimit:", "windowMs:", "loadBalancing:", "tenantId:", "pathType:"} {
		if !strings.Contains(string(y), key) {
			t.Errorf("YAML lacks the camelCase key %s:\n%s", key, y)
		}
	}
	if !strings.Contains(string(y), `name: "yes"`) {
		t.Errorf("a YAML 1.1 boolean is not quoted:\n%s", y)
	}
	j, err := ToJSON(y)
	if err != nil {
		t.Fatalf("ToJSON: %v\n%s", err, y)
	}
	var back Document
	if err := json.Unmarshal(j, &back); err != nil {
		t.Fatal(err)
	}
	if jsonOf(t, back) != jsonOf(t, doc) {
		t.Fatalf("round trip changed the document:\n got %s\nwant %s\nYAML:\n%s", jsonOf(t, back), jsonOf(t, doc), y)
	}
}

func TestToJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want, err string
	}{
		{name: "JSON passes through", in: ` {"tenants":[]}`, want: ` {"tenants":[]}`},
		{name: "YAML", in: "tenants:\n  - id: x\n    rateLimit: null\nroutes: []\n", want: `{"routes":[],"tenants":[{"id":"x","rateLimit":null}]}`},
		{name: "empty", in: "\n", err: "empty"},
		{name: "non-string keys", in: "tenants:\n  - 1: x\n", err: "keys must be strings"},
		{name: "malformed", in: "tenants: [\n", err: "YAML"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ToJSON([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.err)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("ToJSON = %s, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestPastVersionsOneByOneAndInOnePass(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := sqliteStore(t)
	doc := sampleDoc()
	if _, err := ApplyToStore(ctx, store, doc, ApplyOptions{Actor: "cli"}); err != nil {
		t.Fatal(err)
	}
	doc.Tenants, doc.Routes = doc.Tenants[1:], doc.Routes[1:] // beta and its route deleted: version 2
	if _, err := ApplyToStore(ctx, store, doc, ApplyOptions{Actor: "cli"}); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{tenantA: 1, tenantB: 2, routeB1: 2}
	few := []string{tenantA, tenantB, routeB1, "never-seen"}
	many := append([]string{}, few...)
	for i := range onePassThreshold {
		many = append(many, fmt.Sprintf("unknown-%d", i))
	}
	for _, ids := range [][]string{few, many} {
		got, err := PastVersions(ctx, store, ids)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Errorf("%d ids: got %v, want %v", len(ids), got, want)
		}
		for id, v := range want {
			if got[id] != v {
				t.Errorf("%d ids: version of %s = %d, want %d", len(ids), id, got[id], v)
			}
		}
	}
}

// TestWriteResultWritesWhatWriteJSONWrites compares the streamed answers of
// an apply with the whole ones (indented and compact): creates, updates and deletes, text that
// JSON escapes, keys and a seq, and the empty answers.
func TestWriteResultWritesWhatWriteJSONWrites(t *testing.T) {
	h := newHistory(t)
	first, b := h.apply(sampleDoc(), "t")
	doc := sampleDoc()
	doc.Routes = doc.Routes[1:]
	doc.Routes[0].Path = "/a<&>\u2028\"quoted\""
	doc.Tenants[1].RateLimit = nil
	second, _ := h.apply(doc, "t")
	seq := int64(42)
	for name, res := range map[string]Result{
		"created":   {Changes: first, AppliedSeq: &seq, APIKeys: b.Keys},
		"mixed":     {Changes: second, AppliedSeq: &seq, APIKeys: []IssuedKey{}},
		"unchanged": {Changes: []Change{}, APIKeys: []IssuedKey{}},
		"nil lists": {},
	} {
		var whole, streamed, compact strings.Builder
		if err := WriteJSON(&whole, res); err != nil {
			t.Fatal(err)
		}
		if err := WriteResult(&streamed, res); err != nil {
			t.Fatal(err)
		}
		if streamed.String() != whole.String() {
			t.Errorf("%s: WriteResult wrote\n%s\nWriteJSON\n%s", name, streamed.String(), whole.String())
		}
		marshaled, err := gojson.Marshal(res)
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteResultCompact(&compact, res); err != nil {
			t.Fatal(err)
		}
		if compact.String() != string(marshaled) {
			t.Errorf("%s: WriteResultCompact wrote\n%s\nMarshal\n%s", name, compact.String(), marshaled)
		}
	}
}
