// Command gateway is the benchmark's gateway: proxy.New behind Fiber, as
// cmd/gateway wires it, over an in-memory snapshot built with
// projections.Replay: one tenant (auth by API key), 50 routes to match
// past, and the benchmarked route with weighted balancing over two upstream
// base paths and a request and response header transform.
//
// With -redis it is the full path: the tenant's rate limit (high, never
// reached) is shared through Redis as cmd/gateway does it, and the route has
// a circuit breaker (shared too) and a retry block.
package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // served only with -pprof
	"os"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
	"github.com/tenantgate/gateway/proxy"
	"github.com/tenantgate/gateway/resilience/breaker"
	"github.com/tenantgate/gateway/resilience/ratelimit"
	"github.com/tenantgate/gateway/resilience/retry"
)

type static struct{ s *projections.Snapshot }

func (s static) Snapshot() *projections.Snapshot { return s.s }

func main() {
	addr := flag.String("addr", "127.0.0.1:18083", "listen address")
	upstream := flag.String("upstream", "http://127.0.0.1:18081", "upstream URL")
	key := flag.String("key", "gw_benchmark_key_0123456789abcdef", "the tenant's API key")
	accessLog := flag.Bool("access-log", true, "write the access log (JSON) to stderr; false drops it unformatted")
	viaSlog := flag.Bool("slog-access-log", false, "encode the access log with slog's JSONHandler instead of proxy.Config.AccessLog (comparison)")
	rateLimit := flag.Bool("rate-limit", false, "give the tenant a (never reached) local rate limit")
	redisURL := flag.String("redis", "", "full path: share the (never reached) rate limit and the route's circuit breaker through this Redis; the route also gets a retry block")
	redisPrefix := flag.String("redis-prefix", "bench:", "prefix of the Redis keys (-redis)")
	logBuffer := flag.Int("log-buffer", 64<<10, "size of the access log's batch buffer (cmd/gateway: 64 KiB)")
	withMetrics := flag.Bool("metrics", true, "record the Prometheus series cmd/gateway serves on /metrics")
	pprofAddr := flag.String("pprof", "", "serve net/http/pprof on this address (profiling runs)")
	noTimeouts := flag.Bool("no-server-timeouts", false, "analysis only: drop the listener's read/write/idle timeouts, as the bare proxy has none")
	deadlines := flag.Bool("server-deadlines", false, "comparison: enforce the timeouts with fasthttp's per-request socket deadlines instead of proxy.Listener")
	flag.Parse()
	if *pprofAddr != "" {
		go func() { log.Println(http.ListenAndServe(*pprofAddr, nil)) }()
	}

	full := *redisURL != ""
	snap, err := projections.Replay(eventsFor(*key, *upstream, *rateLimit || full, full))
	if err != nil {
		log.Fatal(err)
	}
	cfg := proxy.Config{Log: slog.New(slog.DiscardHandler)}
	if *accessLog {
		// Batched, as cmd/gateway writes its logs: one syscall per flush,
		// not per line.
		w := newBatchWriter(os.Stderr, *logBuffer)
		if *viaSlog {
			cfg.Log = slog.New(slog.NewJSONHandler(w, nil))
		} else {
			cfg.AccessLog = w
		}
	}
	deps := proxy.Deps{Snapshots: static{snap}}
	if *withMetrics {
		deps.Metrics = prometheus.NewRegistry()
	}
	if *rateLimit {
		deps.Limiter = ratelimit.NewLocal()
	}
	if full {
		opts, err := redis.ParseURL(*redisURL)
		if err != nil {
			log.Fatal(err)
		}
		opts.ContextTimeoutEnabled = true
		rdb := redis.NewClient(opts)
		quiet := slog.New(slog.DiscardHandler)
		limiter, err := ratelimit.NewRedis(rdb, ratelimit.RedisConfig{Prefix: *redisPrefix}, quiet)
		if err != nil {
			log.Fatal(err)
		}
		breakers, err := breaker.NewShared(rdb, breaker.SharedConfig{Prefix: *redisPrefix}, quiet)
		if err != nil {
			log.Fatal(err)
		}
		go func() { log.Println(breakers.Run(context.Background())) }()
		deps.Limiter, deps.Breakers, deps.Budgets = limiter, breakers, retry.NewBudgets(retry.BudgetConfig{})
	}
	p, err := proxy.New(cfg, deps)
	if err != nil {
		log.Fatal(err)
	}
	fc := p.FiberConfig()
	if *noTimeouts {
		fc.ReadTimeout, fc.WriteTimeout, fc.IdleTimeout = 0, 0, 0
	}
	app := fiber.New(fc)
	app.Get("/health", func(c *fiber.Ctx) error { return c.SendString("ok") }) // as cmd/gateway has
	app.Use(p.Handler)
	app.Server().Handler = proxy.SettleBodies(app.Server().Handler) // as cmd/gateway serves
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	if *deadlines {
		log.Fatal(app.Listener(ln))
	}
	log.Fatal(p.ServeListener(app, ln))
}

func eventsFor(key, upstream string, limited, resilient bool) []events.Envelope {
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
	var res *events.Resilience
	if resilient {
		res = &events.Resilience{
			CircuitBreaker: &events.CircuitBreaker{Enabled: true, FailureThreshold: 5, SuccessThreshold: 2, Timeout: 30000},
			Retry: &events.Retry{Enabled: true, MaxRetries: 2, BaseDelayMs: 100, MaxDelayMs: 2000,
				RetryableStatusCodes: []int{502, 503, 504}},
		}
	}
	add(events.RouteCreated, "route-bench", tenant, events.RouteSpec{TenantID: tenant, Method: "GET",
		Path: "/api/users", PathType: events.PathPrefix, LoadBalancing: events.BalanceWeighted,
		Upstreams:  []events.Upstream{{URL: upstream + "/a", Weight: 3}, {URL: upstream + "/b", Weight: 1}},
		Resilience: res,
		Transform: &events.Transform{
			Request:  &events.RequestTransform{Headers: &events.HeaderOps{Set: map[string]string{"X-Tenant": "${tenant.id}"}, Remove: []string{"Cookie"}}},
			Response: &events.ResponseTransform{Headers: &events.HeaderOps{Set: map[string]string{"X-Served-By": "gateway"}}},
		}})
	return evs
}

// batchWriter buffers log lines and flushes them every 100 ms or when 64 KiB
// are waiting: the pattern of cmd/gateway's log writer.
type batchWriter struct {
	mu  sync.Mutex
	buf *bufio.Writer
}

func newBatchWriter(w *os.File, size int) *batchWriter {
	b := &batchWriter{buf: bufio.NewWriterSize(w, size)}
	go func() {
		for range time.Tick(100 * time.Millisecond) {
			b.mu.Lock()
			_ = b.buf.Flush()
			b.mu.Unlock()
		}
	}()
	return b
}

func (b *batchWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}
