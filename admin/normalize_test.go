package admin

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func mustParse(t *testing.T, body string) any {
	t.Helper()
	v, err := parseJSON([]byte(body))
	if err != nil {
		t.Fatalf("parse %s: %v", body, err)
	}
	return v
}

func TestRouteDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		want string // the normalized spec's JSON
	}{
		{
			name: "bare route",
			body: route(""),
			want: `{"tenantId":"t1","method":"*","path":"/a","pathType":"prefix","upstreams":[{"url":"http://127.0.0.1:9001","weight":1}],"loadBalancing":"round-robin"}`,
		},
		{
			name: "empty resilience blocks take every default",
			body: resilience(`"circuitBreaker":{},"retry":{},"timeout":{},"healthCheck":{},"fallback":{}`),
			want: `{"tenantId":"t1","method":"*","path":"/a","pathType":"prefix","upstreams":[{"url":"http://127.0.0.1:9001","weight":1}],"loadBalancing":"round-robin",` +
				`"resilience":{"circuitBreaker":{"enabled":true,"failureThreshold":5,"successThreshold":2,"timeout":30000},` +
				`"retry":{"enabled":true,"maxRetries":3,"baseDelayMs":100,"maxDelayMs":2000,"retryableStatusCodes":[500,502,503,504],"retryNonIdempotent":false},` +
				`"timeout":{"enabled":true,"default":10000},` +
				`"healthCheck":{"enabled":true,"endpoint":"/health","intervalMs":30000,"timeoutMs":5000,"healthyThreshold":2,"unhealthyThreshold":3},` +
				`"fallback":{"enabled":true,"statusCode":503,"contentType":"application/json","body":""}}}`,
		},
		{
			name: "explicit values are kept",
			body: resilience(`"circuitBreaker":{"enabled":false,"failureThreshold":1},"retry":{"maxRetries":0,"retryableStatusCodes":[]}`),
			want: `{"tenantId":"t1","method":"*","path":"/a","pathType":"prefix","upstreams":[{"url":"http://127.0.0.1:9001","weight":1}],"loadBalancing":"round-robin",` +
				`"resilience":{"circuitBreaker":{"enabled":false,"failureThreshold":1,"successThreshold":2,"timeout":30000},` +
				`"retry":{"enabled":true,"maxRetries":0,"baseDelayMs":100,"maxDelayMs":2000,"retryableStatusCodes":[],"retryNonIdempotent":false}}}`,
		},
		{
			name: "defaults follow a larger base delay and a shorter interval",
			body: resilience(`"retry":{"baseDelayMs":5000},"healthCheck":{"intervalMs":1000}`),
			want: `{"tenantId":"t1","method":"*","path":"/a","pathType":"prefix","upstreams":[{"url":"http://127.0.0.1:9001","weight":1}],"loadBalancing":"round-robin",` +
				`"resilience":{"retry":{"enabled":true,"maxRetries":3,"baseDelayMs":5000,"maxDelayMs":5000,"retryableStatusCodes":[500,502,503,504],"retryNonIdempotent":false},` +
				`"healthCheck":{"enabled":true,"endpoint":"/health","intervalMs":1000,"timeoutMs":1000,"healthyThreshold":2,"unhealthyThreshold":3}}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			spec, err := decodeRoute(mustParse(t, tt.body))
			if err != nil {
				t.Fatalf("decode: %v %v", err, err.Details)
			}
			got, _ := json.Marshal(spec)
			if string(got) != tt.want {
				t.Fatalf("normalized\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestFullRouteRoundTrips(t *testing.T) {
	t.Parallel()
	spec, err := decodeRoute(mustParse(t, fullRouteBody))
	if err != nil {
		t.Fatalf("decode: %v %v", err, err.Details)
	}
	// The stored JSON decodes back to the same spec: what PATCH merges over
	// is always a valid create body.
	again, err := decodeRoute(mustParse(t, mustJSON(t, spec)))
	if err != nil {
		t.Fatalf("decode normalized: %v %v", err, err.Details)
	}
	if !sameJSON(spec, again) {
		t.Fatalf("round trip changed the spec:\n%s\n%s", mustJSON(t, spec), mustJSON(t, again))
	}
	if spec.Resilience.Retry.RetryNonIdempotent || spec.Upstreams[0].Weight != 3 || spec.Transform.Request.Path.Replacement != "/v2/users$1" {
		t.Fatalf("unexpected spec %s", mustJSON(t, spec))
	}
}

func TestFallbackBodyLimit(t *testing.T) {
	t.Parallel()
	// Unreachable through HTTP with the default 1 MiB body limit, but the
	// rule holds for any larger limit.
	big := strings.Repeat("x", maxFallbackBody+1)
	_, err := decodeRoute(map[string]any{
		"tenantId": "t", "path": "/", "upstreams": []any{map[string]any{"url": "http://u"}},
		"resilience": map[string]any{"fallback": map[string]any{"body": big}},
	})
	if err == nil || len(err.Details) != 1 || err.Details[0].Field != "resilience.fallback.body" {
		t.Fatalf("err = %v %+v", err, err)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestMergePatch(t *testing.T) {
	t.Parallel()
	// Examples of RFC 7396, appendix A.
	tests := []struct {
		name, target, patch, want string
	}{
		{name: "replace", target: `{"a":"b"}`, patch: `{"a":"c"}`, want: `{"a":"c"}`},
		{name: "add", target: `{"a":"b"}`, patch: `{"b":"c"}`, want: `{"a":"b","b":"c"}`},
		{name: "remove", target: `{"a":"b"}`, patch: `{"a":null}`, want: `{}`},
		{name: "remove one", target: `{"a":"b","b":"c"}`, patch: `{"a":null}`, want: `{"b":"c"}`},
		{name: "array replaces", target: `{"a":["b"]}`, patch: `{"a":"c"}`, want: `{"a":"c"}`},
		{name: "nested", target: `{"a":{"b":"c"}}`, patch: `{"a":{"b":"d","c":null}}`, want: `{"a":{"b":"d"}}`},
		{name: "object into array", target: `{"a":[{"b":"c"}]}`, patch: `{"a":[1]}`, want: `{"a":[1]}`},
		{name: "nulls inside new object dropped", target: `{}`, patch: `{"a":{"bb":{"ccc":null}}}`, want: `{"a":{"bb":{}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := mustJSON(t, mergePatch(mustParse(t, tt.target), mustParse(t, tt.patch)))
			if got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestParseIfMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		header  string
		current int64
		wantErr bool
	}{
		{name: "absent", header: "", current: 3},
		{name: "bare", header: "3", current: 3},
		{name: "quoted", header: `"3"`, current: 3},
		{name: "weak", header: `W/"3"`, current: 3},
		{name: "star", header: "*", current: 9},
		{name: "list", header: `"1", "3"`, current: 3},
		{name: "stale", header: `"2"`, current: 3, wantErr: true},
		{name: "garbage never matches", header: `"abc"`, current: 3, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := parseIfMatch(tt.header).check(tt.current)
			if (err != nil) != tt.wantErr {
				t.Fatalf("check = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && (err.Status != 412 || err.Code != "version_mismatch") {
				t.Fatalf("err = %+v", err)
			}
		})
	}
}

func TestNewAPIKey(t *testing.T) {
	t.Parallel()
	k := newAPIKey()
	if !strings.HasPrefix(k.plain, "gw_") || len(k.plain) != 3+43 || k.prefix != k.plain[:7] || len(k.hash) != 64 {
		t.Fatalf("key shape: len %d prefix %q hash %d", len(k.plain), k.prefix, len(k.hash))
	}
	var logs strings.Builder
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("issued", "key", k, "nested", struct{ K apiKey }{k})
	for _, out := range []string{logs.String(), fmt.Sprint(k), fmt.Sprintf("%+v %#v", struct{ K apiKey }{k}, k)} {
		if strings.Contains(out, k.plain[7:]) {
			t.Fatalf("the key shows in %q", out)
		}
	}
	if newAPIKey().plain == k.plain {
		t.Fatal("two keys are equal")
	}
}
