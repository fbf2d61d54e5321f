package main

import (
	"testing"
	"time"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/resilience/health"
)

// TestDefaultsAgree holds the health package's defaults for zero config
// fields (it may not import events) to the route's defaults in events, so
// a route and a health check built without the admin API mean the same.
func TestDefaultsAgree(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"endpoint", health.DefaultEndpoint, events.DefaultHealthEndpoint},
		{"interval", health.DefaultInterval, ms(events.DefaultHealthIntervalMs)},
		{"timeout", health.DefaultTimeout, ms(events.DefaultHealthTimeoutMs)},
		{"healthy threshold", health.DefaultHealthyThreshold, events.DefaultHealthyThreshold},
		{"unhealthy threshold", health.DefaultUnhealthyThreshold, events.DefaultUnhealthyThreshold},
	} {
		if c.got != c.want {
			t.Errorf("health %s default %v, the route's is %v", c.name, c.got, c.want)
		}
	}
}
