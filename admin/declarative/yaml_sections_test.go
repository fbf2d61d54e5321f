package declarative

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tenantgate/gateway/events"
)

// TestToJSONBySectionsMatchesWholeParse: cutting a document into runs of
// sequence items gives byte for byte the JSON of parsing it whole, and any
// document it does not take (or that does not parse in runs) goes to the
// whole parse, with its result or its error.
func TestToJSONBySectionsMatchesWholeParse(t *testing.T) {
	t.Parallel()
	big := sampleDoc()
	for i := range 1500 { // three runs of items
		big.Routes = append(big.Routes, RouteConfig{ID: fmt.Sprintf("r-%04d", i), RouteSpec: events.RouteSpec{
			TenantID: tenantA, Path: fmt.Sprintf("/p/%d", i), PathType: events.PathPrefix,
			Upstreams: []events.Upstream{{URL: "http://10.0.0.1", Weight: 1}},
			Resilience: &events.Resilience{Fallback: &events.Fallback{Enabled: true, StatusCode: 503, ContentType: "text/plain",
				Body: "line 1\n- not an item\nkey: not a key\n"}},
		}})
	}
	bigYAML, err := MarshalYAML(big)
	if err != nil {
		t.Fatal(err)
	}
	var crossRun strings.Builder // an alias to an anchor two runs away
	crossRun.WriteString("tenants:\n  - id: t0\n    rateLimit: &rl {limit: 5, windowMs: 1000}\n")
	for i := 1; i < 600; i++ {
		fmt.Fprintf(&crossRun, "  - id: t%d\n", i)
	}
	crossRun.WriteString("  - id: last\n    rateLimit: *rl\n")

	tests := []struct {
		name     string
		in       string
		sections bool // taken in runs, not parsed whole
	}{
		{name: "export of 1,500 routes", in: string(bigYAML), sections: true},
		{name: "sequences at column 0", in: "tenants:\n- id: a\n  name: b\nroutes:\n- id: r\n  path: /x\n", sections: true},
		{name: "comments and blank lines", in: "# top\ntenants: # the tenants\n\n  # first\n  - id: a\n\n  - id: b # trailing\n# between\nroutes:\n  - id: r\n", sections: true},
		{name: "no newline at the end", in: "tenants:\n  - id: a", sections: true},
		{name: "CRLF", in: "tenants:\r\n  - id: a\r\n    name: b\r\nroutes:\r\n  - id: r\r\n", sections: true},
		{name: "an empty section", in: "tenants:\nroutes:\n  - id: r\n", sections: true},
		{name: "an anchor in the same run", in: "tenants:\n  - id: a\n    rateLimit: &rl {limit: 1, windowMs: 1}\n  - id: b\n    rateLimit: *rl\n", sections: true},
		{name: "an alias to another run", in: crossRun.String()},
		{name: "document marker", in: "---\ntenants:\n  - id: a\n"},
		{name: "flow sequence", in: "tenants: [{id: a}]\n"},
		{name: "mapping under a key", in: "tenants:\n  id: a\n"},
		{name: "duplicate key", in: "tenants:\n  - id: a\ntenants:\n  - id: b\n"},
		{name: "stray line", in: "tenants:\n  - id: a\n bad: x\n"},
		{name: "tab indentation", in: "tenants:\n\t- id: a\n"},
		{name: "non-string key in an item", in: "tenants:\n  - 1: x\n"},
		{name: "malformed item", in: "tenants:\n  - id: [a\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			want, wantErr := wholeToJSON([]byte(tt.in))
			_, taken := toJSONBySections([]byte(tt.in))
			if taken != tt.sections {
				t.Errorf("taken in runs: %v, want %v", taken, tt.sections)
			}
			got, err := ToJSON([]byte(tt.in))
			if fmt.Sprint(err) != fmt.Sprint(wantErr) || string(got) != string(want) {
				t.Fatalf("ToJSON = %.300s, %v\nwhole = %.300s, %v", got, err, want, wantErr)
			}
		})
	}
}
