package proxy

import "github.com/tenantgate/gateway/resilience/breaker"

// UpstreamKey identifies the runtime state of one upstream of one route. It
// is breaker.Key (health.Key has the same fields).
type UpstreamKey = breaker.Key

// HealthChecker reports active health-check results, without I/O.
type HealthChecker interface {
	Healthy(k UpstreamKey) bool
}
