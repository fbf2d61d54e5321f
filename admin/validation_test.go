package admin

import (
	"net/http"
	"strings"
	"testing"
)

// route is a valid create body with extra fields appended; a repeated key
// overrides the base one (the last of duplicate JSON keys wins).
func route(extra string) string {
	return `{"tenantId":"t1","path":"/a","upstreams":[{"url":"http://127.0.0.1:9001"}]` + extra + `}`
}

func resilience(block string) string { return route(`,"resilience":{` + block + `}`) }

func TestCreateTenantValidation(t *testing.T) {
	t.Parallel()
	app := newStubApp(t, stubProjector{})
	tests := []struct {
		name   string
		body   string
		status int
		code   string
		field  string
	}{
		{name: "valid body reaches the store", body: `{"name":"acme"}`, status: 503, code: "store_unavailable", field: "-"},
		{name: "valid boundaries", body: `{"name":"` + strings.Repeat("é", 100) + `","status":"suspended","rateLimit":{"limit":1000000,"windowMs":86400000}}`, status: 503, code: "store_unavailable", field: "-"},
		{name: "valid lower boundaries", body: `{"name":"a","rateLimit":{"limit":1,"windowMs":100}}`, status: 503, code: "store_unavailable", field: "-"},
		{name: "null rateLimit is unlimited", body: `{"name":"a","rateLimit":null}`, status: 503, code: "store_unavailable", field: "-"},
		{name: "integral float", body: `{"name":"a","rateLimit":{"limit":1e3,"windowMs":1000.0}}`, status: 503, code: "store_unavailable", field: "-"},
		{name: "malformed JSON", body: `{"name":`, status: 400, code: "invalid_json", field: "-"},
		{name: "trailing data", body: `{"name":"a"} {}`, status: 400, code: "invalid_json", field: "-"},
		{name: "not JSON", body: `name=acme`, status: 400, code: "invalid_json", field: "-"},
		{name: "empty body", body: ``, status: 400, code: "invalid_json", field: "-"},
		{name: "array body", body: `[]`, status: 400, code: "validation_failed", field: ""},
		{name: "missing name", body: `{}`, status: 400, code: "validation_failed", field: "name"},
		{name: "null name", body: `{"name":null}`, status: 400, code: "validation_failed", field: "name"},
		{name: "blank name", body: `{"name":"   "}`, status: 400, code: "validation_failed", field: "name"},
		{name: "empty name", body: `{"name":""}`, status: 400, code: "validation_failed", field: "name"},
		{name: "name too long", body: `{"name":"` + strings.Repeat("é", 101) + `"}`, status: 400, code: "validation_failed", field: "name"},
		{name: "name wrong type", body: `{"name":5}`, status: 400, code: "validation_failed", field: "name"},
		{name: "bad status", body: `{"name":"a","status":"gone"}`, status: 400, code: "validation_failed", field: "status"},
		{name: "empty status", body: `{"name":"a","status":""}`, status: 400, code: "validation_failed", field: "status"},
		{name: "unknown field", body: `{"name":"a","plan":"gold"}`, status: 400, code: "validation_failed", field: "plan"},
		{name: "unknown nested field", body: `{"name":"a","rateLimit":{"limit":1,"windowMs":1000,"burst":2}}`, status: 400, code: "validation_failed", field: "rateLimit.burst"},
		{name: "limit wrong type", body: `{"name":"a","rateLimit":{"limit":"5","windowMs":1000}}`, status: 400, code: "validation_failed", field: "rateLimit.limit"},
		{name: "limit fraction", body: `{"name":"a","rateLimit":{"limit":1.5,"windowMs":1000}}`, status: 400, code: "validation_failed", field: "rateLimit.limit"},
		{name: "limit huge", body: `{"name":"a","rateLimit":{"limit":1e300,"windowMs":1000}}`, status: 400, code: "validation_failed", field: "rateLimit.limit"},
		{name: "limit zero", body: `{"name":"a","rateLimit":{"limit":0,"windowMs":1000}}`, status: 400, code: "validation_failed", field: "rateLimit.limit"},
		{name: "limit too high", body: `{"name":"a","rateLimit":{"limit":1000001,"windowMs":1000}}`, status: 400, code: "validation_failed", field: "rateLimit.limit"},
		{name: "limit missing", body: `{"name":"a","rateLimit":{"windowMs":1000}}`, status: 400, code: "validation_failed", field: "rateLimit.limit"},
		{name: "window too short", body: `{"name":"a","rateLimit":{"limit":1,"windowMs":99}}`, status: 400, code: "validation_failed", field: "rateLimit.windowMs"},
		{name: "window too long", body: `{"name":"a","rateLimit":{"limit":1,"windowMs":86400001}}`, status: 400, code: "validation_failed", field: "rateLimit.windowMs"},
		{name: "rateLimit not an object", body: `{"name":"a","rateLimit":[1]}`, status: 400, code: "validation_failed", field: "rateLimit"},
		{name: "NUL in name", body: `{"name":"a\u0000b"}`, status: 400, code: "validation_failed", field: "name"},
		{name: "oversize body", body: `{"name":"` + strings.Repeat("a", 1<<20) + `"}`, status: 413, code: "payload_too_large", field: "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wantError(t, do(t, app, http.MethodPost, "/admin/tenants", tt.body), tt.status, tt.code, tt.field)
		})
	}
}

func TestCreateRouteValidation(t *testing.T) {
	t.Parallel()
	app := newStubApp(t, stubProjector{})
	tests := []struct {
		name   string
		body   string
		status int
		code   string
		field  string
	}{
		{name: "valid body reaches the store", body: route(""), status: 503, code: "store_unavailable", field: "-"},
		{name: "valid full body reaches the store", body: fullRouteBody, status: 503, code: "store_unavailable", field: "-"},
		{name: "valid boundaries", body: route(`,"method":"*","path":"/` + strings.Repeat("a", 2047) + `","upstreams":[` + strings.Repeat(`{"url":"https://u:1/base","weight":1000},`, 63) + `{"url":"http://[::1]:8080","weight":1}]`), status: 503, code: "store_unavailable", field: "-"},
		{name: "valid regex", body: route(`,"pathType":"regex","path":"/u/[0-9]+$"`), status: 503, code: "store_unavailable", field: "-"},
		{name: "valid regex anchored at both ends", body: route(`,"pathType":"regex","path":"^/m/.*$"`), status: 503, code: "store_unavailable", field: "-"},
		{name: "valid regex anchored at the start", body: route(`,"pathType":"regex","path":"^/v[0-9]+/x$"`), status: 503, code: "store_unavailable", field: "-"},
		{name: "valid regex without a leading slash", body: route(`,"pathType":"regex","path":"[0-9]+$"`), status: 503, code: "store_unavailable", field: "-"},
		{name: "valid resilience boundaries", body: resilience(`"circuitBreaker":{"failureThreshold":1000,"successThreshold":1,"timeout":3600000},"retry":{"maxRetries":0,"baseDelayMs":60000,"maxDelayMs":300000,"retryableStatusCodes":[100,599]},"timeout":{"default":1,"byMethod":{"CONNECT":3600000}},"healthCheck":{"endpoint":"/","intervalMs":100,"timeoutMs":100,"healthyThreshold":100,"unhealthyThreshold":1},"fallback":{"statusCode":599,"body":""}`), status: 503, code: "store_unavailable", field: "-"},
		{name: "malformed JSON", body: `{"tenantId":"t1",`, status: 400, code: "invalid_json", field: "-"},
		{name: "missing tenantId", body: `{"path":"/a","upstreams":[{"url":"http://u:1"}]}`, status: 400, code: "validation_failed", field: "tenantId"},
		{name: "missing path", body: `{"tenantId":"t","upstreams":[{"url":"http://u:1"}]}`, status: 400, code: "validation_failed", field: "path"},
		{name: "missing upstreams", body: `{"tenantId":"t","path":"/a"}`, status: 400, code: "validation_failed", field: "upstreams"},
		{name: "empty upstreams", body: route(`,"upstreams":[]`), status: 400, code: "validation_failed", field: "upstreams"},
		{name: "65 upstreams", body: route(`,"upstreams":[` + strings.Repeat(`{"url":"http://u:1"},`, 64) + `{"url":"http://u:1"}]`), status: 400, code: "validation_failed", field: "upstreams"},
		{name: "path without slash", body: route(`,"path":"a"`), status: 400, code: "validation_failed", field: "path"},
		{name: "prefix path without slash", body: route(`,"pathType":"prefix","path":"^/a"`), status: 400, code: "validation_failed", field: "path"},
		{name: "exact path without slash", body: route(`,"pathType":"exact","path":"a/b"`), status: 400, code: "validation_failed", field: "path"},
		{name: "blank regex", body: route(`,"pathType":"regex","path":" "`), status: 400, code: "validation_failed", field: "path"},
		{name: "path too long", body: route(`,"path":"/` + strings.Repeat("a", 2048) + `"`), status: 400, code: "validation_failed", field: "path"},
		{name: "path wrong type", body: route(`,"path":["/a"]`), status: 400, code: "validation_failed", field: "path"},
		{name: "invalid regex", body: route(`,"pathType":"regex","path":"/a(["`), status: 400, code: "validation_failed", field: "path"},
		{name: "bad pathType", body: route(`,"pathType":"glob"`), status: 400, code: "validation_failed", field: "pathType"},
		{name: "bad method", body: route(`,"method":"get"`), status: 400, code: "validation_failed", field: "method"},
		{name: "empty method", body: route(`,"method":""`), status: 400, code: "validation_failed", field: "method"},
		{name: "bad loadBalancing", body: route(`,"loadBalancing":"least-conn"`), status: 400, code: "validation_failed", field: "loadBalancing"},
		{name: "unknown top-level field", body: route(`,"priority":1`), status: 400, code: "validation_failed", field: "priority"},
		{name: "unknown upstream field", body: route(`,"upstreams":[{"url":"http://u:1","zone":"a"}]`), status: 400, code: "validation_failed", field: "upstreams[0].zone"},
		{name: "unknown deep field", body: resilience(`"retry":{"jitter":true}`), status: 400, code: "validation_failed", field: "resilience.retry.jitter"},
		{name: "unknown transform field", body: route(`,"transform":{"request":{"query":{}}}`), status: 400, code: "validation_failed", field: "transform.request.query"},
		{name: "url wrong type", body: route(`,"upstreams":[{"url":5}]`), status: 400, code: "validation_failed", field: "upstreams[0].url"},
		{name: "url missing", body: route(`,"upstreams":[{"weight":1}]`), status: 400, code: "validation_failed", field: "upstreams[0].url"},
		{name: "url relative", body: route(`,"upstreams":[{"url":"/x"}]`), status: 400, code: "validation_failed", field: "upstreams[0].url"},
		{name: "url ftp", body: route(`,"upstreams":[{"url":"ftp://u:1"}]`), status: 400, code: "validation_failed", field: "upstreams[0].url"},
		{name: "url without host", body: route(`,"upstreams":[{"url":"http://"}]`), status: 400, code: "validation_failed", field: "upstreams[0].url"},
		{name: "url with query", body: route(`,"upstreams":[{"url":"http://u:1/?a=1"}]`), status: 400, code: "validation_failed", field: "upstreams[0].url"},
		{name: "url with fragment", body: route(`,"upstreams":[{"url":"http://u:1/#x"}]`), status: 400, code: "validation_failed", field: "upstreams[0].url"},
		{name: "url with userinfo", body: route(`,"upstreams":[{"url":"http://me:pw@u:1"}]`), status: 400, code: "validation_failed", field: "upstreams[0].url"},
		{name: "second url bad", body: route(`,"upstreams":[{"url":"http://u:1"},{"url":"nope"}]`), status: 400, code: "validation_failed", field: "upstreams[1].url"},
		{name: "weight zero", body: route(`,"upstreams":[{"url":"http://u:1","weight":0}]`), status: 400, code: "validation_failed", field: "upstreams[0].weight"},
		{name: "weight too high", body: route(`,"upstreams":[{"url":"http://u:1","weight":1001}]`), status: 400, code: "validation_failed", field: "upstreams[0].weight"},
		{name: "weight wrong type", body: route(`,"upstreams":[{"url":"http://u:1","weight":"3"}]`), status: 400, code: "validation_failed", field: "upstreams[0].weight"},
		{name: "resilience not an object", body: route(`,"resilience":true`), status: 400, code: "validation_failed", field: "resilience"},
		{name: "failureThreshold zero", body: resilience(`"circuitBreaker":{"failureThreshold":0}`), status: 400, code: "validation_failed", field: "resilience.circuitBreaker.failureThreshold"},
		{name: "successThreshold too high", body: resilience(`"circuitBreaker":{"successThreshold":1001}`), status: 400, code: "validation_failed", field: "resilience.circuitBreaker.successThreshold"},
		{name: "breaker timeout too long", body: resilience(`"circuitBreaker":{"timeout":3600001}`), status: 400, code: "validation_failed", field: "resilience.circuitBreaker.timeout"},
		{name: "enabled wrong type", body: resilience(`"circuitBreaker":{"enabled":"yes"}`), status: 400, code: "validation_failed", field: "resilience.circuitBreaker.enabled"},
		{name: "maxRetries too high", body: resilience(`"retry":{"maxRetries":11}`), status: 400, code: "validation_failed", field: "resilience.retry.maxRetries"},
		{name: "maxRetries negative", body: resilience(`"retry":{"maxRetries":-1}`), status: 400, code: "validation_failed", field: "resilience.retry.maxRetries"},
		{name: "baseDelay zero", body: resilience(`"retry":{"baseDelayMs":0}`), status: 400, code: "validation_failed", field: "resilience.retry.baseDelayMs"},
		{name: "maxDelay below base", body: resilience(`"retry":{"baseDelayMs":500,"maxDelayMs":400}`), status: 400, code: "validation_failed", field: "resilience.retry.maxDelayMs"},
		{name: "maxDelay below default base", body: resilience(`"retry":{"maxDelayMs":50}`), status: 400, code: "validation_failed", field: "resilience.retry.maxDelayMs"},
		{name: "maxDelay too long", body: resilience(`"retry":{"maxDelayMs":300001}`), status: 400, code: "validation_failed", field: "resilience.retry.maxDelayMs"},
		{name: "retryable status out of range", body: resilience(`"retry":{"retryableStatusCodes":[500,600]}`), status: 400, code: "validation_failed", field: "resilience.retry.retryableStatusCodes[1]"},
		{name: "retryable status wrong type", body: resilience(`"retry":{"retryableStatusCodes":["500"]}`), status: 400, code: "validation_failed", field: "resilience.retry.retryableStatusCodes[0]"},
		{name: "retryable status null", body: resilience(`"retry":{"retryableStatusCodes":[null]}`), status: 400, code: "validation_failed", field: "resilience.retry.retryableStatusCodes[0]"},
		{name: "timeout default zero", body: resilience(`"timeout":{"default":0}`), status: 400, code: "validation_failed", field: "resilience.timeout.default"},
		{name: "timeout by bad method", body: resilience(`"timeout":{"byMethod":{"FETCH":100}}`), status: 400, code: "validation_failed", field: "resilience.timeout.byMethod.FETCH"},
		{name: "timeout by method out of range", body: resilience(`"timeout":{"byMethod":{"GET":0}}`), status: 400, code: "validation_failed", field: "resilience.timeout.byMethod.GET"},
		{name: "timeout by method wrong type", body: resilience(`"timeout":{"byMethod":{"GET":"1s"}}`), status: 400, code: "validation_failed", field: "resilience.timeout.byMethod.GET"},
		{name: "health endpoint relative", body: resilience(`"healthCheck":{"endpoint":"health"}`), status: 400, code: "validation_failed", field: "resilience.healthCheck.endpoint"},
		{name: "health interval too short", body: resilience(`"healthCheck":{"intervalMs":99}`), status: 400, code: "validation_failed", field: "resilience.healthCheck.intervalMs"},
		{name: "health timeout above interval", body: resilience(`"healthCheck":{"intervalMs":1000,"timeoutMs":1001}`), status: 400, code: "validation_failed", field: "resilience.healthCheck.timeoutMs"},
		{name: "health threshold zero", body: resilience(`"healthCheck":{"healthyThreshold":0}`), status: 400, code: "validation_failed", field: "resilience.healthCheck.healthyThreshold"},
		{name: "unhealthy threshold too high", body: resilience(`"healthCheck":{"unhealthyThreshold":101}`), status: 400, code: "validation_failed", field: "resilience.healthCheck.unhealthyThreshold"},
		{name: "fallback status out of range", body: resilience(`"fallback":{"statusCode":99}`), status: 400, code: "validation_failed", field: "resilience.fallback.statusCode"},
		{name: "fallback content type with newline", body: resilience(`"fallback":{"contentType":"text/plain\r\nX: y"}`), status: 400, code: "validation_failed", field: "resilience.fallback.contentType"},
		{name: "header name invalid", body: route(`,"transform":{"request":{"headers":{"set":{"X Bad":"v"}}}}`), status: 400, code: "validation_failed", field: "transform.request.headers.set.X Bad"},
		{name: "header value with newline", body: route(`,"transform":{"response":{"headers":{"add":{"X-A":"a\nb"}}}}`), status: 400, code: "validation_failed", field: "transform.response.headers.add.X-A"},
		{name: "header remove invalid", body: route(`,"transform":{"response":{"headers":{"remove":["ok","bad header"]}}}`), status: 400, code: "validation_failed", field: "transform.response.headers.remove[1]"},
		{name: "rewrite pattern invalid", body: route(`,"transform":{"request":{"path":{"pattern":"(","replacement":"/"}}}`), status: 400, code: "validation_failed", field: "transform.request.path.pattern"},
		{name: "rewrite pattern missing", body: route(`,"transform":{"request":{"path":{"replacement":"/"}}}`), status: 400, code: "validation_failed", field: "transform.request.path.pattern"},
		{name: "oversize body", body: route(`,"path":"/` + strings.Repeat("a", 1<<20) + `"`), status: 413, code: "payload_too_large", field: "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wantError(t, do(t, app, http.MethodPost, "/admin/routes", tt.body), tt.status, tt.code, tt.field)
		})
	}
}

// fullRouteBody is the example of API.md.
const fullRouteBody = `{
  "tenantId": "t1",
  "method": "GET",
  "path": "/api/users",
  "pathType": "prefix",
  "upstreams": [{"url": "http://127.0.0.1:9001", "weight": 3}, {"url": "http://127.0.0.1:9002", "weight": 1}],
  "loadBalancing": "weighted",
  "resilience": {
    "circuitBreaker": {"enabled": true, "failureThreshold": 5, "successThreshold": 2, "timeout": 30000},
    "retry": {"enabled": true, "maxRetries": 3, "baseDelayMs": 100, "maxDelayMs": 2000, "retryableStatusCodes": [500, 502, 503, 504]},
    "timeout": {"default": 10000, "byMethod": {"GET": 5000, "POST": 30000}},
    "healthCheck": {"enabled": true, "endpoint": "/health", "intervalMs": 30000, "timeoutMs": 5000, "healthyThreshold": 2, "unhealthyThreshold": 3},
    "fallback": {"enabled": true, "statusCode": 503, "contentType": "application/json", "body": "{\"error\":\"Service temporarily unavailable\"}"}
  },
  "transform": {
    "request":  {"headers": {"set": {"X-Env": "prod"}, "add": {"X-Trace": "gw"}, "remove": ["Cookie"]},
                 "path": {"pattern": "^/api/users(.*)$", "replacement": "/v2/users$1"}},
    "response": {"headers": {"set": {"X-Served-By": "gateway"}, "remove": ["Server"]}}
  }
}`
