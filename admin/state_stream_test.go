package admin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

// TestWriteStateDocumentSameBytes: the streamed state document is byte for
// byte what json.Marshal (the admin API) and an indenting json.Encoder
// (gateway replay) write for the whole document, empty or not, with
// characters that JSON escapes.
func TestWriteStateDocumentSameBytes(t *testing.T) {
	t.Parallel()
	s := projections.Empty()
	seq := int64(0)
	add := func(typ events.Type, id string, data any) {
		raw, _ := json.Marshal(data)
		seq++
		s, _ = projections.Apply(s, events.Envelope{Seq: seq, ID: fmt.Sprint(seq), Type: typ, AggregateID: id, AggregateVersion: 1,
			TenantID: "t1", OccurredAt: time.Unix(seq, 0), Data: raw})
	}
	check := func(what string) {
		t.Helper()
		for _, indent := range []bool{false, true} {
			var want bytes.Buffer
			if indent {
				enc := json.NewEncoder(&want)
				enc.SetIndent("", "  ")
				_ = enc.Encode(NewStateDocument(s))
			} else {
				b, _ := json.Marshal(NewStateDocument(s))
				want.Write(b)
			}
			var got bytes.Buffer
			if err := WriteStateDocument(&got, s, indent); err != nil {
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
}
