package proxy

import "github.com/tenantgate/gateway/resilience/breaker"

// UpstreamKey identifies the runtime state of one upstream of one route. It
// is breaker.Key; health.Key has the same fields and converts to it.
type UpstreamKey = breaker.Key
