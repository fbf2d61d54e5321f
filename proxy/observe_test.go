package proxy

import (
	"encoding/json"
	"github.com/tenantgate/gateway/events/testenv"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/resilience/retry"
)

type syncBuffer = testenv.SyncBuffer

func TestAccessLogAndMetrics(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	up := newUpstream(t, "u", nil)
	bad := newUpstream(t, "bad", statusHandler(503))
	ten, key := w.tenant("acme")
	rid := w.route(events.RouteSpec{TenantID: ten, Path: "/ok", Upstreams: ups(up.URL)})
	retried := w.route(events.RouteSpec{TenantID: ten, Path: "/bad", Upstreams: ups(bad.URL), Resilience: &events.Resilience{
		Retry: &events.Retry{Enabled: true, MaxRetries: 2, BaseDelayMs: 1, MaxDelayMs: 1, RetryableStatusCodes: []int{500, 502, 503, 504}}}})
	dead := w.route(events.RouteSpec{TenantID: ten, Path: "/dead", Upstreams: ups(deadURL(t))})
	var logs syncBuffer
	reg := prometheus.NewRegistry()
	gw, _ := gateway(t, Config{Log: slog.New(slog.NewJSONHandler(&logs, nil))}, Deps{Snapshots: w, Metrics: reg})

	for range 3 {
		get(t, gw+"/ok/x?secret=no", key)
	}
	get(t, gw+"/nothing", key)
	get(t, gw+"/x", "gw_wrong_key_123")
	get(t, gw+"/bad", key)
	get(t, gw+"/dead", key)

	for _, tc := range []struct {
		name string
		c    string
		l    map[string]string
		want float64
	}{
		{name: "2xx on the route", c: "gateway_proxy_requests_total", l: map[string]string{"tenant": ten, "route": rid, "class": "2xx"}, want: 3},
		{name: "unmatched 404 without route label", c: "gateway_proxy_requests_total", l: map[string]string{"tenant": ten, "route": "", "class": "4xx"}, want: 1},
		{name: "unauthenticated 403", c: "gateway_proxy_requests_total", l: map[string]string{"tenant": "", "route": "", "class": "4xx"}, want: 1},
		{name: "retries", c: "gateway_proxy_retries_total", l: map[string]string{"tenant": ten, "route": retried}, want: 2},
		{name: "upstream errors", c: "gateway_proxy_upstream_errors_total", l: map[string]string{"tenant": ten, "route": dead, "kind": "connect"}, want: 1},
		{name: "latency observed", c: "gateway_proxy_request_duration_seconds", l: map[string]string{"tenant": ten, "route": rid}, want: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := seriesValue(t, reg, tc.c, tc.l); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	// Label values are ids and classes, never paths or keys.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v := lp.GetValue(); strings.Contains(v, "/") || strings.Contains(v, "secret") || strings.Contains(v, "gw_") {
					t.Fatalf("metric %s carries label %s=%q", mf.GetName(), lp.GetName(), v)
				}
			}
		}
	}

	text := logs.String()
	if strings.Contains(text, key) || strings.Contains(text, "gw_wrong_key_123") {
		t.Fatal("the access log contains an API key")
	}
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if len(lines) != 7 {
		t.Fatalf("%d access-log lines for 7 requests", len(lines))
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"tenant": ten, "route": rid, "upstream": up.URL, "status": 200.0, "method": "GET"} {
		if first[k] != want {
			t.Errorf("log %s = %v, want %v", k, first[k], want)
		}
	}
	if first["request_id"] == "" || first["duration"] == nil {
		t.Errorf("log line lacks request id or duration: %v", first)
	}
}

// seriesValue is a counter's value, or a histogram's sample count.
func seriesValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func TestRetryBudget(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	bad := newUpstream(t, "bad", statusHandler(503))
	ten, key := w.tenant("acme")
	w.route(events.RouteSpec{TenantID: ten, Path: "/", Upstreams: ups(bad.URL), Resilience: &events.Resilience{
		Retry: &events.Retry{Enabled: true, MaxRetries: 3, BaseDelayMs: 1, MaxDelayMs: 1, RetryableStatusCodes: []int{500, 502, 503, 504}}}})
	// No floor and 20%: the first requests cannot afford a retry.
	budgets := retry.NewBudgets(retry.BudgetConfig{MinPerSecond: -1, Ratio: 0.2})
	gw, _ := gateway(t, Config{}, Deps{Snapshots: w, Budgets: budgets})
	for range 4 {
		if r := get(t, gw+"/x", key); r.status != 503 {
			t.Fatalf("status %d", r.status)
		}
	}
	if n := bad.hits.Load(); n != 4 {
		t.Fatalf("upstream got %d attempts for 4 requests, want 4 (budget spent, no retries)", n)
	}
}
