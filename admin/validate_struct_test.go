package admin

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/invopop/validation"
)

// validationBodies are route, tenant and key bodies, valid and invalid in
// every block, for TestValidateStructIsValidateStruct.
var validationBodies = map[string][]string{
	"route": {
		route(``),
		route(`,"method":"GET","pathType":"exact","loadBalancing":"weighted","upstreams":[{"url":"http://a:1","weight":3},{"url":"https://b/x","weight":1}]`),
		route(`,"method":"FETCH","pathType":"glob","loadBalancing":"least"`),
		route(`,"path":"","tenantId":" "`),
		route(`,"path":"a","upstreams":[]`),
		route(`,"pathType":"regex","path":"(["`),
		route(`,"pathType":"regex","path":"^/items/[0-9]+$"`),
		route(`,"upstreams":[{"url":"ftp://a"},{"url":"http://a?q=1","weight":0},{"weight":2}]`),
		`{}`,
		`{"tenantId":null,"path":null,"upstreams":null}`,
		resilience(`"circuitBreaker":{"failureThreshold":0,"successThreshold":1001,"timeout":-1}`),
		resilience(`"circuitBreaker":{"enabled":false}`),
		resilience(`"retry":{"maxRetries":11,"baseDelayMs":500,"maxDelayMs":100,"retryableStatusCodes":[99,600,503]}`),
		resilience(`"retry":{"enabled":true,"maxRetries":3,"baseDelayMs":100,"maxDelayMs":2000,"retryableStatusCodes":[500,502,503,504]},"timeout":{"enabled":true,"default":10000}`),
		resilience(`"timeout":{"default":0,"byMethod":{"GET":0,"FETCH":5,"POST":100}}`),
		resilience(`"healthCheck":{"endpoint":"health","intervalMs":50,"timeoutMs":100000,"healthyThreshold":0,"unhealthyThreshold":0}`),
		resilience(`"healthCheck":{"endpoint":"/up","intervalMs":1000,"timeoutMs":500}`),
		resilience(`"fallback":{"statusCode":99,"contentType":"","body":"x"}`),
		resilience(`"fallback":{"statusCode":503,"body":"` + strings.Repeat("b", maxFallbackBody+1) + `"}`),
		route(`,"transform":{"request":{"headers":{"set":{"bad name":"v","X-A":"a\nb"},"add":{"X-B":"b"},"remove":["X C",""]},"path":{"pattern":"(["}},"response":{"headers":{"set":{"X-R":"r"}}}}`),
		route(`,"transform":{"request":{"path":{"replacement":"/x"}}}`),
		route(`,"transform":{"request":{"path":{"pattern":"^/a(.*)$","replacement":"/b$1"}},"response":{"headers":{"remove":["Server"]}}}`),
	},
	"tenant": {
		`{"name":"acme"}`, `{}`, `{"name":"  ","status":"gone"}`, `{"name":"a","status":"suspended","rateLimit":{"limit":0,"windowMs":99}}`,
		`{"name":"a","rateLimit":{"limit":5,"windowMs":1000}}`, `{"name":"` + strings.Repeat("é", 101) + `"}`,
	},
	"key": {
		`{"name":"ci","role":"viewer"}`, `{}`, `{"name":" ","role":"root","tenantIds":[]}`, `{"name":"ci","role":"admin","tenantIds":["a","b"]}`,
	},
}

// validateBody decodes and validates body as a kind of validationBodies.
func validateBody(t *testing.T, kind, body string) error {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	switch kind {
	case "route":
		var b routeBody
		if err := bind(v, &b); err != nil {
			return err
		}
		return b.Validate()
	case "tenant":
		var b tenantBody
		if err := bind(v, &b); err != nil {
			return err
		}
		return b.Validate()
	default:
		var b keyBody
		if err := bind(v, &b); err != nil {
			return err
		}
		return b.Validate()
	}
}

// TestValidateStructIsValidateStruct holds validateStruct, which looks each
// field up once, to invopop's ValidateStruct, which it replaced: the same
// errors for every body of every kind.
func TestValidateStructIsValidateStruct(t *testing.T) {
	for kind, bodies := range validationBodies {
		for _, body := range bodies {
			useReference.Store(true)
			want := validateBody(t, kind, body)
			useReference.Store(false)
			got := validateBody(t, kind, body)
			if !reflect.DeepEqual(got, want) || errString(got) != errString(want) {
				t.Errorf("%s %.200s:\n got  %v\n want %v", kind, body, got, want)
			}
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestValidateStructEdges covers what the bodies do not: a field pointer
// outside the struct, a value instead of a pointer, a struct with an
// embedded field, a json tag naming no field.
func TestValidateStructEdges(t *testing.T) {
	t.Parallel()
	type inner struct {
		A *string `json:"a"`
	}
	type outer struct {
		inner
		B *string `json:"b,omitempty"`
		C *string
		D *string `json:"-"`
	}
	var other string
	var o outer
	tests := []struct {
		name   string
		fields func() ([]fieldRules, []*validation.FieldRules)
	}{
		{name: "names from tags and Go names", fields: func() ([]fieldRules, []*validation.FieldRules) {
			return []fieldRules{fieldRule(&o.B, required), fieldRule(&o.C, required), fieldRule(&o.D, required)},
				[]*validation.FieldRules{validation.Field(&o.B, required), validation.Field(&o.C, required), validation.Field(&o.D, required)}
		}},
		{name: "embedded field", fields: func() ([]fieldRules, []*validation.FieldRules) {
			return []fieldRules{fieldRule(&o.A, required)}, []*validation.FieldRules{validation.Field(&o.A, required)}
		}},
		{name: "pointer outside the struct", fields: func() ([]fieldRules, []*validation.FieldRules) {
			return []fieldRules{fieldRule(&other, required)}, []*validation.FieldRules{validation.Field(&other, required)}
		}},
		{name: "not a pointer", fields: func() ([]fieldRules, []*validation.FieldRules) {
			return []fieldRules{fieldRule(o.B, required)}, []*validation.FieldRules{validation.Field(o.B, required)}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mine, theirs := tt.fields()
			got, want := validateStruct(&o, mine...), validation.ValidateStruct(&o, theirs...)
			if !reflect.DeepEqual(got, want) || errString(got) != errString(want) || want == nil {
				t.Fatalf("got %v, want %v", got, want)
			}
		})
	}
}
