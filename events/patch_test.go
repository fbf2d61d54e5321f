package events

import (
	"encoding/json"
	"testing"
)

func TestPatchDistinguishesAbsentNullAndValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		json    string
		wantSet bool
		wantNil bool
	}{
		{name: "absent keeps the value", json: `{}`, wantSet: false, wantNil: false},
		{name: "null clears it", json: `{"rateLimit":null}`, wantSet: true, wantNil: true},
		{name: "a value replaces it", json: `{"rateLimit":{"limit":5,"windowMs":1000}}`, wantSet: true, wantNil: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var d TenantUpdatedData
			if err := json.Unmarshal([]byte(tt.json), &d); err != nil {
				t.Fatal(err)
			}
			if d.RateLimit.Set != tt.wantSet {
				t.Fatalf("Set = %v, want %v", d.RateLimit.Set, tt.wantSet)
			}
			current := &RateLimit{Limit: 1, WindowMs: 100}
			d.RateLimit.ApplyTo(&current)
			if (current == nil) != tt.wantNil {
				t.Fatalf("after ApplyTo: %+v", current)
			}
			out, _ := json.Marshal(d)
			if !tt.wantSet && string(out) != `{}` {
				t.Fatalf("an absent field must be omitted, got %s", out)
			}
		})
	}
}
