package events

// This file holds the data of each event type and the configuration model it
// carries. The JSON names are the contract's (see API.md); the stored events
// carry the API key's digest, which the admin API leaves out of what it returns.

// TenantStatus is a tenant's lifecycle state.
type TenantStatus string

// Tenant statuses.
const (
	TenantActive    TenantStatus = "active"
	TenantSuspended TenantStatus = "suspended"
)

// RateLimit is a sliding-window limit: at most Limit requests per WindowMs.
type RateLimit struct {
	Limit    int   `json:"limit"`
	WindowMs int64 `json:"windowMs"`
}

// TenantCreatedData is the data of TenantCreated.
type TenantCreatedData struct {
	Name         string       `json:"name"`
	Status       TenantStatus `json:"status"`
	RateLimit    *RateLimit   `json:"rateLimit"`
	APIKeyHash   string       `json:"apiKeyHash"`
	APIKeyPrefix string       `json:"apiKeyPrefix"`
}

// TenantUpdatedData is the data of TenantUpdated: the new values of the
// fields that changed. RateLimit set to nil means "now unlimited".
type TenantUpdatedData struct {
	Name      Patch[string]       `json:"name,omitzero"`
	Status    Patch[TenantStatus] `json:"status,omitzero"`
	RateLimit Patch[*RateLimit]   `json:"rateLimit,omitzero"`
}

// TenantAPIKeyRotatedData is the data of TenantApiKeyRotated.
type TenantAPIKeyRotatedData struct {
	APIKeyHash   string `json:"apiKeyHash"`
	APIKeyPrefix string `json:"apiKeyPrefix"`
}

// TenantDeletedData is the (empty) data of TenantDeleted.
type TenantDeletedData struct{}

// PathType says how a route's path is compared with a request path.
type PathType string

// Path types.
const (
	PathExact  PathType = "exact"
	PathPrefix PathType = "prefix"
	PathRegex  PathType = "regex"
)

// Load-balancing policies.
const (
	BalanceRoundRobin = "round-robin"
	BalanceWeighted   = "weighted"
	BalanceRandom     = "random"
)

// AnyMethod is the route method that matches every request method.
const AnyMethod = "*"

// Upstream is one backend of a route. URL's path is a base path.
type Upstream struct {
	URL    string `json:"url"`
	Weight int    `json:"weight"`
}

// RouteSpec is a route's configuration, normalized (defaults filled). It is the
// data of RouteCreated and the body of the route object minus id, version and
// timestamps.
type RouteSpec struct {
	TenantID      string      `json:"tenantId"`
	Method        string      `json:"method"`
	Path          string      `json:"path"`
	PathType      PathType    `json:"pathType"`
	Upstreams     []Upstream  `json:"upstreams"`
	LoadBalancing string      `json:"loadBalancing"`
	Resilience    *Resilience `json:"resilience,omitempty"`
	Transform     *Transform  `json:"transform,omitempty"`
}

// RouteCreatedData is the data of RouteCreated.
type RouteCreatedData = RouteSpec

// RouteUpdatedData is the data of RouteUpdated: the new values of the top-level
// fields that changed. Resilience or Transform set to nil removes the block.
type RouteUpdatedData struct {
	Method        Patch[string]      `json:"method,omitzero"`
	Path          Patch[string]      `json:"path,omitzero"`
	PathType      Patch[PathType]    `json:"pathType,omitzero"`
	Upstreams     Patch[[]Upstream]  `json:"upstreams,omitzero"`
	LoadBalancing Patch[string]      `json:"loadBalancing,omitzero"`
	Resilience    Patch[*Resilience] `json:"resilience,omitzero"`
	Transform     Patch[*Transform]  `json:"transform,omitzero"`
}

// RouteDeletedData is the (empty) data of RouteDeleted.
type RouteDeletedData struct{}

// Resilience is a route's resilience block. A nil sub-block is off (the
// timeout then defaults to DefaultTimeoutMs). Present sub-blocks are stored
// normalized, with every default filled in.
type Resilience struct {
	CircuitBreaker *CircuitBreaker `json:"circuitBreaker,omitempty"`
	Retry          *Retry          `json:"retry,omitempty"`
	Timeout        *Timeout        `json:"timeout,omitempty"`
	HealthCheck    *HealthCheck    `json:"healthCheck,omitempty"`
	Fallback       *Fallback       `json:"fallback,omitempty"`
}

// Defaults of a route's resilience blocks, for the fields an author left out
// of a present block (admin fills them in before the event is written, so
// stored blocks are complete). DefaultTimeoutMs is also the timeout of a
// route without a timeout block. The resilience packages' own defaults for
// zero config fields are the same numbers (a test in cmd/gateway holds them
// together).
const (
	DefaultTimeoutMs          = 10000
	DefaultFailureThreshold   = 5
	DefaultSuccessThreshold   = 2
	DefaultBreakerTimeoutMs   = 30000
	DefaultMaxRetries         = 3
	DefaultBaseDelayMs        = 100
	DefaultMaxDelayMs         = 2000
	DefaultHealthEndpoint     = "/health"
	DefaultHealthIntervalMs   = 30000
	DefaultHealthTimeoutMs    = 5000
	DefaultHealthyThreshold   = 2
	DefaultUnhealthyThreshold = 3
	DefaultFallbackStatus     = 503
	DefaultFallbackType       = "application/json"
)

// DefaultRetryableStatusCodes are the statuses a retry block retries when it
// names none (a new slice each call: callers keep it).
func DefaultRetryableStatusCodes() []int { return []int{500, 502, 503, 504} }

// CircuitBreaker configures the breaker kept per (route, upstream).
type CircuitBreaker struct {
	Enabled          bool `json:"enabled"`
	FailureThreshold int  `json:"failureThreshold"`
	SuccessThreshold int  `json:"successThreshold"`
	Timeout          int  `json:"timeout"` // ms open before half-open
}

// Retry configures retries of failed upstream attempts.
type Retry struct {
	Enabled              bool  `json:"enabled"`
	MaxRetries           int   `json:"maxRetries"`
	BaseDelayMs          int   `json:"baseDelayMs"`
	MaxDelayMs           int   `json:"maxDelayMs"`
	RetryableStatusCodes []int `json:"retryableStatusCodes"`
	RetryNonIdempotent   bool  `json:"retryNonIdempotent"`
}

// Timeout configures the upstream timeout, per method where given.
type Timeout struct {
	Enabled  bool           `json:"enabled"`
	Default  int            `json:"default"`
	ByMethod map[string]int `json:"byMethod,omitempty"`
}

// HealthCheck configures active health checks of each upstream.
type HealthCheck struct {
	Enabled            bool   `json:"enabled"`
	Endpoint           string `json:"endpoint"`
	IntervalMs         int    `json:"intervalMs"`
	TimeoutMs          int    `json:"timeoutMs"`
	HealthyThreshold   int    `json:"healthyThreshold"`
	UnhealthyThreshold int    `json:"unhealthyThreshold"`
}

// Fallback is the response served when no upstream answer can be had.
type Fallback struct {
	Enabled     bool   `json:"enabled"`
	StatusCode  int    `json:"statusCode"`
	ContentType string `json:"contentType"`
	Body        string `json:"body"`
}

// Transform rewrites requests on their way up and responses on their way back.
type Transform struct {
	Request  *RequestTransform  `json:"request,omitempty"`
	Response *ResponseTransform `json:"response,omitempty"`
}

// RequestTransform changes the request's headers and path.
type RequestTransform struct {
	Headers *HeaderOps   `json:"headers,omitempty"`
	Path    *PathRewrite `json:"path,omitempty"`
}

// ResponseTransform changes the response's headers.
type ResponseTransform struct {
	Headers *HeaderOps `json:"headers,omitempty"`
}

// HeaderOps are applied in the order remove, set (replace), add (append).
type HeaderOps struct {
	Set    map[string]string `json:"set,omitempty"`
	Add    map[string]string `json:"add,omitempty"`
	Remove []string          `json:"remove,omitempty"`
}

// PathRewrite is an RE2 replace on the request path (not the query).
type PathRewrite struct {
	Pattern     string `json:"pattern"`
	Replacement string `json:"replacement"`
}

// AdminRole is what a named admin key may do (see API.md, "Admin identities
// and roles"): viewer reads, operator also writes tenants and routes, admin
// also manages keys.
type AdminRole string

// Admin roles, weakest first.
const (
	RoleViewer   AdminRole = "viewer"
	RoleOperator AdminRole = "operator"
	RoleAdmin    AdminRole = "admin"
)

// AdminKeyCreatedData is the data of AdminKeyCreated. TenantIDs nil: every
// tenant. Only the key's digest is stored, never the key.
type AdminKeyCreatedData struct {
	Name      string    `json:"name"`
	Role      AdminRole `json:"role"`
	TenantIDs []string  `json:"tenantIds,omitempty"`
	KeyHash   string    `json:"keyHash"`
	KeyPrefix string    `json:"keyPrefix"`
}

// AdminKeyRevokedData is the (empty) data of AdminKeyRevoked.
type AdminKeyRevokedData struct{}
