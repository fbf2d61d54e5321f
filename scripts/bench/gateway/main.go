// Command gateway is the benchmark's gateway: proxy.New behind Fiber, as
// cmd/gateway wires it, over an in-memory snapshot built with
// projections.Replay: one tenant (auth by API key), 50 routes to match
// past, and the benchmarked route with weighted balancing over two upstream
// base paths and a request and response header transform.
package main

import (
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // served only with -pprof
	"os"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
	"github.com/tenantgate/gateway/proxy"
	"github.com/tenantgate/gateway/resilience/ratelimit"
)

type static struct{ s *projections.Snapshot }

func (s static) Snapshot() *projections.Snapshot { return s.s }

func main() {
	addr := flag.String("addr", "127.0.0.1:18083", "listen address")
	upstream := flag.String("upstream", "http://127.0.0.1:18081", "upstream URL")
	key := flag.String("key", "gw_benchmark_key_0123456789abcdef", "the tenant's API key")
	accessLog := flag.Bool("access-log", true, "write the access log (JSON) to stderr; false drops it unformatted")
	rateLimit := flag.Bool("rate-limit", false, "give the tenant a (never reached) local rate limit")
	pprofAddr := flag.String("pprof", "", "serve net/http/pprof on this address (profiling runs)")
	noTimeouts := flag.Bool("no-server-timeouts", false, "analysis only: drop the listener's read/write/idle timeouts, as the bare proxy has none")
	flag.Parse()
	if *pprofAddr != "" {
		go func() { log.Println(http.ListenAndServe(*pprofAddr, nil)) }()
	}

	snap, err := projections.Replay(eventsFor(*key, *upstream, *rateLimit))
	if err != nil {
		log.Fatal(err)
	}
	handler := slog.Handler(slog.DiscardHandler)
	if *accessLog {
		handler = slog.NewJSONHandler(os.Stderr, nil)
	}
	deps := proxy.Deps{Snapshots: static{snap}}
	if *rateLimit {
		deps.Limiter = ratelimit.NewLocal()
	}
	p, err := proxy.New(proxy.Config{Log: slog.New(handler)}, deps)
	if err != nil {
		log.Fatal(err)
	}
	fc := p.FiberConfig()
	if *noTimeouts {
		fc.ReadTimeout, fc.WriteTimeout, fc.IdleTimeout = 0, 0, 0
	}
	app := fiber.New(fc)
	app.Use(p.Handler)
	log.Fatal(app.Listen(*addr))
}

func eventsFor(key, upstream string, limited bool) []events.Envelope {
	var evs []events.Envelope
	add := func(typ events.Type, agg, tenant string, data any) {
		b, err := json.Marshal(data)
		if err != nil {
			log.Fatal(err)
		}
		evs = append(evs, events.Envelope{Seq: int64(len(evs) + 1), ID: fmt.Sprint("ev", len(evs)), Type: typ,
			AggregateType: events.AggregateTypeOf(typ), AggregateID: agg, AggregateVersion: 1, TenantID: tenant,
			Actor: "bench", OccurredAt: time.Now(), Data: b})
	}
	h := projections.KeyHash([]byte(key))
	var rl *events.RateLimit
	if limited {
		rl = &events.RateLimit{Limit: 1_000_000, WindowMs: 1000}
	}
	tenant := "00000000-0000-7000-8000-000000000001"
	add(events.TenantCreated, tenant, tenant, events.TenantCreatedData{Name: "bench", Status: events.TenantActive,
		RateLimit: rl, APIKeyHash: hex.EncodeToString(h[:]), APIKeyPrefix: key[:7]})
	for i := range 50 {
		add(events.RouteCreated, fmt.Sprintf("route-other-%02d", i), tenant, events.RouteSpec{TenantID: tenant, Method: "*",
			Path: fmt.Sprintf("/svc%02d", i), PathType: events.PathPrefix, LoadBalancing: events.BalanceRoundRobin,
			Upstreams: []events.Upstream{{URL: upstream, Weight: 1}}})
	}
	add(events.RouteCreated, "route-bench", tenant, events.RouteSpec{TenantID: tenant, Method: "GET",
		Path: "/api/users", PathType: events.PathPrefix, LoadBalancing: events.BalanceWeighted,
		Upstreams: []events.Upstream{{URL: upstream + "/a", Weight: 3}, {URL: upstream + "/b", Weight: 1}},
		Transform: &events.Transform{
			Request:  &events.RequestTransform{Headers: &events.HeaderOps{Set: map[string]string{"X-Tenant": "${tenant.id}"}, Remove: []string{"Cookie"}}},
			Response: &events.ResponseTransform{Headers: &events.HeaderOps{Set: map[string]string{"X-Served-By": "gateway"}}},
		}})
	return evs
}
