package admin

import (
	"fmt"
	"slices"

	"github.com/invopop/validation"

	"github.com/tenantgate/gateway/events"
)

// routeBody is the create body of a route, and what a PATCH merge patch is
// applied to. Pointers tell an absent field from a zero one, so defaults are
// filled only where the author left a field out.
type routeBody struct {
	TenantID      *string         `json:"tenantId"`
	Method        *string         `json:"method"`
	Path          *string         `json:"path"`
	PathType      *string         `json:"pathType"`
	Upstreams     []upstreamBody  `json:"upstreams"`
	LoadBalancing *string         `json:"loadBalancing"`
	Resilience    *resilienceBody `json:"resilience"`
	Transform     *transformBody  `json:"transform"`
}

type upstreamBody struct {
	URL    *string `json:"url"`
	Weight *int64  `json:"weight"`
}

type resilienceBody struct {
	CircuitBreaker *breakerBody  `json:"circuitBreaker"`
	Retry          *retryBody    `json:"retry"`
	Timeout        *timeoutBody  `json:"timeout"`
	HealthCheck    *healthBody   `json:"healthCheck"`
	Fallback       *fallbackBody `json:"fallback"`
}

type breakerBody struct {
	Enabled          *bool  `json:"enabled"`
	FailureThreshold *int64 `json:"failureThreshold"`
	SuccessThreshold *int64 `json:"successThreshold"`
	Timeout          *int64 `json:"timeout"`
}

type retryBody struct {
	Enabled              *bool   `json:"enabled"`
	MaxRetries           *int64  `json:"maxRetries"`
	BaseDelayMs          *int64  `json:"baseDelayMs"`
	MaxDelayMs           *int64  `json:"maxDelayMs"`
	RetryableStatusCodes []int64 `json:"retryableStatusCodes"`
	RetryNonIdempotent   *bool   `json:"retryNonIdempotent"`
}

type timeoutBody struct {
	Enabled  *bool            `json:"enabled"`
	Default  *int64           `json:"default"`
	ByMethod map[string]int64 `json:"byMethod"`
}

type healthBody struct {
	Enabled            *bool   `json:"enabled"`
	Endpoint           *string `json:"endpoint"`
	IntervalMs         *int64  `json:"intervalMs"`
	TimeoutMs          *int64  `json:"timeoutMs"`
	HealthyThreshold   *int64  `json:"healthyThreshold"`
	UnhealthyThreshold *int64  `json:"unhealthyThreshold"`
}

type fallbackBody struct {
	Enabled     *bool   `json:"enabled"`
	StatusCode  *int64  `json:"statusCode"`
	ContentType *string `json:"contentType"`
	Body        *string `json:"body"`
}

type transformBody struct {
	Request  *requestTransformBody  `json:"request"`
	Response *responseTransformBody `json:"response"`
}

type requestTransformBody struct {
	Headers *headerOpsBody   `json:"headers"`
	Path    *pathRewriteBody `json:"path"`
}

type responseTransformBody struct {
	Headers *headerOpsBody `json:"headers"`
}

type headerOpsBody struct {
	Set    map[string]string `json:"set"`
	Add    map[string]string `json:"add"`
	Remove []string          `json:"remove"`
}

type pathRewriteBody struct {
	Pattern     *string `json:"pattern"`
	Replacement *string `json:"replacement"`
}

// Limits of a route's fields; its defaults are events' (next to the types).
const (
	maxFallbackBody = 1 << 20
	maxPathChars    = 2048
	maxTimeoutMs    = 3_600_000
)

// Route rules (ranges are inclusive):
//
//	tenantId                     required; a live tenant (checked by the command)
//	method                       GET HEAD POST PUT PATCH DELETE OPTIONS TRACE CONNECT or *, default *
//	path                         required, at most 2048 characters; starts with / for exact and prefix;
//	                             for regex a valid RE2 pattern, matched anywhere in the path unless anchored
//	pathType                     exact | prefix | regex, default prefix
//	upstreams                    1..64; url absolute http/https with a host, no query, fragment or userinfo; weight 1..1000, default 1
//	loadBalancing                round-robin | weighted | random, default round-robin
//	circuitBreaker               failureThreshold 1..1000 (5), successThreshold 1..1000 (2), timeout 1..3,600,000 ms (30000)
//	retry                        maxRetries 0..10 (3), baseDelayMs 1..60,000 (100), maxDelayMs baseDelayMs..300,000 (2000),
//	                             retryableStatusCodes 100..599, at most 100 ([500,502,503,504]), retryNonIdempotent (false)
//	timeout                      default 1..3,600,000 ms (10000), byMethod: HTTP method -> 1..3,600,000 ms
//	healthCheck                  endpoint starts with / (/health), intervalMs 100..3,600,000 (30000),
//	                             timeoutMs 1..intervalMs (5000), healthyThreshold and unhealthyThreshold 1..100 (2, 3)
//	fallback                     statusCode 100..599 (503), contentType (application/json), body at most 1 MiB ("")
//	transform headers            names are header tokens; values without CR, LF or NUL
//	transform request path       pattern required and a valid RE2 pattern; replacement default ""
//
// Inside a present resilience sub-block, enabled defaults to true.
func (b routeBody) Validate() error {
	// A regex is RE2 against the whole path, anchored by its author if
	// wanted ("/items/[0-9]+$"), so only exact and prefix paths need a "/".
	pathShape := startsWithSlash
	if b.PathType != nil && *b.PathType == string(events.PathRegex) {
		pathShape = compiles
	}
	return validateStruct(&b,
		fieldRule(&b.TenantID, required, notBlank),
		fieldRule(&b.Method, oneOf(append([]string{events.AnyMethod}, httpMethods...)...)),
		fieldRule(&b.Path, required, notBlank, maxChars(maxPathChars), pathShape),
		fieldRule(&b.PathType, oneOf(string(events.PathExact), string(events.PathPrefix), string(events.PathRegex))),
		fieldRule(&b.Upstreams, required, count(1, 64)),
		fieldRule(&b.LoadBalancing, oneOf(events.BalanceRoundRobin, events.BalanceWeighted, events.BalanceRandom)),
		fieldRule(&b.Resilience),
		fieldRule(&b.Transform),
	)
}

func (b upstreamBody) Validate() error {
	return validateStruct(&b,
		fieldRule(&b.URL, required, upstreamURL),
		fieldRule(&b.Weight, between(1, 1000)),
	)
}

func (b resilienceBody) Validate() error {
	return validateStruct(&b,
		fieldRule(&b.CircuitBreaker),
		fieldRule(&b.Retry),
		fieldRule(&b.Timeout),
		fieldRule(&b.HealthCheck),
		fieldRule(&b.Fallback),
	)
}

func (b breakerBody) Validate() error {
	return validateStruct(&b,
		fieldRule(&b.FailureThreshold, between(1, 1000)),
		fieldRule(&b.SuccessThreshold, between(1, 1000)),
		fieldRule(&b.Timeout, between(1, maxTimeoutMs)),
	)
}

func (b retryBody) Validate() error {
	base := int64(events.DefaultBaseDelayMs)
	if b.BaseDelayMs != nil {
		base = *b.BaseDelayMs
	}
	return validateStruct(&b,
		fieldRule(&b.MaxRetries, between(0, 10)),
		fieldRule(&b.BaseDelayMs, between(1, 60_000)),
		fieldRule(&b.MaxDelayMs, between(max(base, 1), 300_000)),
		fieldRule(&b.RetryableStatusCodes, count(0, 100), validation.Each(between(100, 599))),
	)
}

func (b timeoutBody) Validate() error {
	return validateStruct(&b,
		fieldRule(&b.Default, between(1, maxTimeoutMs)),
		fieldRule(&b.ByMethod, validation.By(func(any) error {
			errs := validation.Errors{}
			for m, ms := range b.ByMethod {
				switch {
				case !slices.Contains(httpMethods, m):
					errs[m] = fmt.Errorf("must be keyed by an HTTP method (%v)", httpMethods)
				case ms < 1 || ms > maxTimeoutMs:
					errs[m] = fmt.Errorf("must be between 1 and %d", maxTimeoutMs)
				}
			}
			if len(errs) > 0 {
				return errs
			}
			return nil
		})),
	)
}

func (b healthBody) Validate() error {
	interval := int64(events.DefaultHealthIntervalMs)
	if b.IntervalMs != nil {
		interval = *b.IntervalMs
	}
	return validateStruct(&b,
		fieldRule(&b.Endpoint, notBlank, startsWithSlash, maxChars(maxPathChars), noControl),
		fieldRule(&b.IntervalMs, between(100, maxTimeoutMs)),
		fieldRule(&b.TimeoutMs, between(1, max(interval, 1))),
		fieldRule(&b.HealthyThreshold, between(1, 100)),
		fieldRule(&b.UnhealthyThreshold, between(1, 100)),
	)
}

func (b fallbackBody) Validate() error {
	return validateStruct(&b,
		fieldRule(&b.StatusCode, between(100, 599)),
		fieldRule(&b.ContentType, notBlank, maxChars(255), noControl),
		fieldRule(&b.Body, maxBytes(maxFallbackBody)),
	)
}

func (b transformBody) Validate() error {
	return validateStruct(&b,
		fieldRule(&b.Request),
		fieldRule(&b.Response),
	)
}

func (b requestTransformBody) Validate() error {
	return validateStruct(&b,
		fieldRule(&b.Headers),
		fieldRule(&b.Path),
	)
}

func (b responseTransformBody) Validate() error {
	return validateStruct(&b, fieldRule(&b.Headers))
}

func (b headerOpsBody) Validate() error {
	return validateStruct(&b,
		fieldRule(&b.Set, headerMap),
		fieldRule(&b.Add, headerMap),
		fieldRule(&b.Remove, count(0, 100), validation.Each(headerToken)),
	)
}

func (b pathRewriteBody) Validate() error {
	return validateStruct(&b,
		fieldRule(&b.Pattern, required, notBlank, compiles),
		fieldRule(&b.Replacement, maxChars(maxPathChars), noControl),
	)
}

// normalize fills every default; b must have passed Validate.
func (b routeBody) normalize() events.RouteSpec {
	s := events.RouteSpec{
		TenantID:      deref(b.TenantID, ""),
		Method:        deref(b.Method, events.AnyMethod),
		Path:          deref(b.Path, ""),
		PathType:      events.PathType(deref(b.PathType, string(events.PathPrefix))),
		LoadBalancing: deref(b.LoadBalancing, events.BalanceRoundRobin),
	}
	for _, u := range b.Upstreams {
		s.Upstreams = append(s.Upstreams, events.Upstream{URL: deref(u.URL, ""), Weight: int(deref(u.Weight, 1))})
	}
	if r := b.Resilience; r != nil {
		s.Resilience = &events.Resilience{}
		if cb := r.CircuitBreaker; cb != nil {
			s.Resilience.CircuitBreaker = &events.CircuitBreaker{
				Enabled:          deref(cb.Enabled, true),
				FailureThreshold: int(deref(cb.FailureThreshold, events.DefaultFailureThreshold)),
				SuccessThreshold: int(deref(cb.SuccessThreshold, events.DefaultSuccessThreshold)),
				Timeout:          int(deref(cb.Timeout, events.DefaultBreakerTimeoutMs)),
			}
		}
		if rt := r.Retry; rt != nil {
			codes := events.DefaultRetryableStatusCodes()
			if rt.RetryableStatusCodes != nil {
				codes = make([]int, len(rt.RetryableStatusCodes))
				for i, c := range rt.RetryableStatusCodes {
					codes[i] = int(c)
				}
			}
			s.Resilience.Retry = &events.Retry{
				Enabled:              deref(rt.Enabled, true),
				MaxRetries:           int(deref(rt.MaxRetries, events.DefaultMaxRetries)),
				BaseDelayMs:          int(deref(rt.BaseDelayMs, events.DefaultBaseDelayMs)),
				MaxDelayMs:           int(deref(rt.MaxDelayMs, max(events.DefaultMaxDelayMs, deref(rt.BaseDelayMs, events.DefaultBaseDelayMs)))),
				RetryableStatusCodes: append([]int{}, codes...),
				RetryNonIdempotent:   deref(rt.RetryNonIdempotent, false),
			}
		}
		if t := r.Timeout; t != nil {
			s.Resilience.Timeout = &events.Timeout{
				Enabled: deref(t.Enabled, true),
				Default: int(deref(t.Default, events.DefaultTimeoutMs)),
			}
			if len(t.ByMethod) > 0 {
				s.Resilience.Timeout.ByMethod = make(map[string]int, len(t.ByMethod))
				for m, ms := range t.ByMethod {
					s.Resilience.Timeout.ByMethod[m] = int(ms)
				}
			}
		}
		if h := r.HealthCheck; h != nil {
			s.Resilience.HealthCheck = &events.HealthCheck{
				Enabled:            deref(h.Enabled, true),
				Endpoint:           deref(h.Endpoint, events.DefaultHealthEndpoint),
				IntervalMs:         int(deref(h.IntervalMs, events.DefaultHealthIntervalMs)),
				TimeoutMs:          int(deref(h.TimeoutMs, min(events.DefaultHealthTimeoutMs, deref(h.IntervalMs, events.DefaultHealthIntervalMs)))),
				HealthyThreshold:   int(deref(h.HealthyThreshold, events.DefaultHealthyThreshold)),
				UnhealthyThreshold: int(deref(h.UnhealthyThreshold, events.DefaultUnhealthyThreshold)),
			}
		}
		if f := r.Fallback; f != nil {
			s.Resilience.Fallback = &events.Fallback{
				Enabled:     deref(f.Enabled, true),
				StatusCode:  int(deref(f.StatusCode, events.DefaultFallbackStatus)),
				ContentType: deref(f.ContentType, events.DefaultFallbackType),
				Body:        deref(f.Body, ""),
			}
		}
	}
	if t := b.Transform; t != nil {
		s.Transform = &events.Transform{}
		if rq := t.Request; rq != nil {
			s.Transform.Request = &events.RequestTransform{Headers: rq.Headers.normalize()}
			if p := rq.Path; p != nil {
				s.Transform.Request.Path = &events.PathRewrite{Pattern: deref(p.Pattern, ""), Replacement: deref(p.Replacement, "")}
			}
		}
		if rs := t.Response; rs != nil {
			s.Transform.Response = &events.ResponseTransform{Headers: rs.Headers.normalize()}
		}
	}
	return s
}

func (h *headerOpsBody) normalize() *events.HeaderOps {
	if h == nil {
		return nil
	}
	return &events.HeaderOps{Set: h.Set, Add: h.Add, Remove: h.Remove}
}

func deref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// decodeRoute turns a parsed JSON value into a validated, normalized spec.
func decodeRoute(v any) (events.RouteSpec, *Error) {
	var b routeBody
	if err := bind(v, &b); err != nil {
		return events.RouteSpec{}, err
	}
	if err := b.Validate(); err != nil {
		return events.RouteSpec{}, errValidation(validationDetails("", err)...)
	}
	return b.normalize(), nil
}
