package declarative

import (
	"encoding/json"
	"fmt"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/tenantgate/gateway/events"
)

// itemsJSON is the conversion runJSON replaced: decode the items, then
// json.Marshal each.
func itemsJSON(text []byte) ([][]byte, error) {
	var items []any
	if err := yaml.Unmarshal(text, &items); err != nil {
		return nil, err
	}
	out := make([][]byte, len(items))
	for i, item := range items {
		v, err := jsonCompatible(item, "")
		if err != nil {
			return nil, err
		}
		if out[i], err = json.Marshal(v); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// TestRunJSONMatchesDecoding holds runJSON, which writes JSON from the
// nodes, to decoding the items and encoding them, for every kind of
// scalar and layout; what it does not mirror it must decline.
func TestRunJSONMatchesDecoding(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		in       string
		declined bool
	}{
		{name: "export-like route", in: "- id: r1\n  tenantId: t\n  method: GET\n  path: /api/v1/items\n  upstreams:\n    - url: http://10.0.0.1:8080\n      weight: 3\n  resilience:\n    retry:\n      enabled: true\n      retryableStatusCodes:\n        - 500\n        - 502\n    timeout: {enabled: true, default: 10000}\n- id: r2\n"},
		{name: "keys sorted", in: "- z: 1\n  a: 2\n  m: {y: 1, b: 2}\n"},
		{name: "strings to escape", in: "- a: \"<b>&\\\"q\\\" \\\\ \\t\"\n  b: 'it''s'\n  c: é ü 😀\n  d: \"\\u2028\\u0001\"\n  e: |\n    line 1\n    line 2\n"},
		{name: "strings that look like other types", in: "- a: \"true\"\n  b: '5'\n  c: \"null\"\n  d: \"\"\n"},
		{name: "yaml 1.1 booleans are strings", in: "- a: yes\n  b: no\n  c: on\n  d: y\n"},
		{name: "booleans", in: "- a: true\n  b: false\n  c: True\n  d: FALSE\n"},
		{name: "nulls", in: "- a: null\n  b: ~\n  c:\n  d: Null\n-\n- null\n"},
		{name: "integers", in: "- [0, -0, 7, -7, 007, +5, 0x1F, 0o17, 0b101, 1_000, 123456789012345678, 1234567890123456789, 99999999999999999999]\n"},
		{name: "floats", in: "- [1.0, 1.5, -0.0, 1e3, 1E-7, 3.0e+10, 0.1]\n"},
		{name: "timestamps", in: "- a: 2026-12-07\n  b: 2026-12-07T16:00:00Z\n  c: 2026-12-07 16:00:00.5 +01:00\n"},
		{name: "empty collections", in: "- a: []\n  b: {}\n- []\n- {}\n"},
		{name: "scalar items", in: "- a\n- 1\n- true\n"},
		{name: "an anchor with no alias", in: "- a: &x 5\n  b: 6\n"},
		{name: "alias", in: "- a: &x 5\n  b: *x\n", declined: true},
		{name: "merge key", in: "- base: &b {x: 1}\n  <<: *b\n", declined: true},
		{name: "infinity", in: "- a: .inf\n", declined: true},
		{name: "explicit tag", in: "- a: !!str 5\n", declined: true},
		{name: "binary tag", in: "- a: !!binary aGVsbG8=\n", declined: true},
		{name: "duplicate key", in: "- a: 1\n  a: 2\n", declined: true},
		{name: "duplicate key quoted", in: "- a: 1\n  'a': 2\n", declined: true},
		{name: "integer key", in: "- 1: a\n", declined: true},
		{name: "null key", in: "- ~: a\n", declined: true},
		{name: "not a sequence", in: "a: 1\n", declined: true},
		{name: "malformed", in: "- a: [1\n", declined: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var probe []any
			n := -1
			if yaml.Unmarshal([]byte(tt.in), &probe) == nil {
				n = len(probe)
			}
			got, ok := runJSON([]byte(tt.in), n)
			if ok == tt.declined {
				t.Fatalf("ok = %v, want %v", ok, !tt.declined)
			}
			if !ok {
				return
			}
			want, err := itemsJSON([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprintf("%s", got) != fmt.Sprintf("%s", want) {
				t.Fatalf("runJSON  %s\ndecoding %s", got, want)
			}
		})
	}
}

// BenchmarkRunJSON converts a run of exported routes (two upstreams, retry
// and timeout) to JSON from the nodes, and by decoding and encoding them
// (what it replaced).
func BenchmarkRunJSON(b *testing.B) {
	doc := sampleDoc()
	doc.Routes = nil
	for i := range itemsPerRun {
		r := route(fmt.Sprintf("0190a0b1-0000-7000-8000-%012d", i), tenantA, fmt.Sprintf("/api/v1/service%d/items", i))
		r.Method, r.LoadBalancing = "GET", events.BalanceWeighted
		r.Upstreams = []events.Upstream{{URL: fmt.Sprintf("http://10.0.%d.1:8080", i%200), Weight: 3}, {URL: fmt.Sprintf("http://10.0.%d.2:8080/base", i%200), Weight: 1}}
		r.Resilience = &events.Resilience{
			Retry:   &events.Retry{Enabled: true, MaxRetries: 3, BaseDelayMs: 100, MaxDelayMs: 2000, RetryableStatusCodes: []int{500, 502, 503, 504}},
			Timeout: &events.Timeout{Enabled: true, Default: 10000},
		}
		doc.Routes = append(doc.Routes, r)
	}
	y, err := MarshalYAML(doc)
	if err != nil {
		b.Fatal(err)
	}
	sections, ok := splitSections(y)
	if !ok {
		b.Fatal("not in sections")
	}
	items := sections[len(sections)-1].items
	text := y[items[0].start:items[len(items)-1].end]
	b.Run("nodes", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(text)))
		for b.Loop() {
			if _, ok := runJSON(text, len(items)); !ok {
				b.Fatal("declined")
			}
		}
	})
	b.Run("decoded", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(text)))
		for b.Loop() {
			if _, err := itemsJSON(text); err != nil {
				b.Fatal(err)
			}
		}
	})
}
