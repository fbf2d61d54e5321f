package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/tenantgate/gateway/admin"
	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
	"github.com/tenantgate/gateway/proxy"
)

// serve runs the gateway until ctx ends (SIGINT/SIGTERM), then drains: /ready
// turns 503, the listeners stop accepting, in-flight requests finish within
// ShutdownTimeout, background loops stop.
//
// accessLog, when not nil, takes the proxy's access-log lines (JSON, encoded
// without slog); nil sends them through log.
func serve(ctx context.Context, cfg Config, log *slog.Logger, accessLog, stdout io.Writer) error {
	if cfg.adminKeyGenerated {
		// Printed once, to stdout and not to the log, so it never lands in log storage.
		fmt.Fprintf(stdout, "admin key (generated for this run; set ADMIN_API_KEY to choose one): %s\n", cfg.AdminAPIKey)
	}
	// TLS files first: a missing or bad pair stops the start before anything else runs.
	var certs *certReloader
	if cfg.TLSCertFile != "" {
		var err error
		if certs, err = newCertReloader(cfg.TLSCertFile, cfg.TLSKeyFile, log); err != nil {
			return err
		}
	}
	upstreamRoots, err := loadUpstreamRoots(cfg.UpstreamCAFile)
	if err != nil {
		return err
	}
	cache, cached := openLocalCache(cfg, log)
	if cache != nil {
		defer cache.Close()
	}
	store, err := openServeStore(ctx, cfg, cache, cached, log)
	if err != nil {
		return err
	}
	defer store.Close()
	if cache != nil {
		if cached, err = checkLocalCache(ctx, cache, cached, store, log); err != nil {
			return err
		}
	}
	lazy, _ := store.(*lazyStore)
	checkpoints, err := newCheckpointer(cfg, store, log)
	if err != nil {
		return err
	}
	var onRestored func(*projections.Snapshot)
	if cache != nil && checkpoints != nil {
		// The cache's base follows the checkpoints, so it stays short.
		checkpoints.Observe(cache.Rebase)
		onRestored = cache.Rebase
	}
	if cfg.failpoint == "exit-after-commit" {
		store = failpointStore{store}
	}

	var rdb redis.UniversalClient
	var bus events.Bus = events.NewMemoryBus()
	if cfg.RedisURL != "" {
		routeRedisLogs(log)
		rdb = cfg.redis.client()
		defer rdb.Close()
		log.Info("redis client", cfg.redis.logAttrs()...)
		if bus, err = events.NewRedisBus(rdb, events.RedisBusConfig{Stream: cfg.RedisPrefix + "events", MaxLen: cfg.StreamMaxLen}, log); err != nil {
			return err
		}
		if checkpoints != nil {
			checkpoints.ShareWith(redisClaims{rdb: rdb, prefix: cfg.RedisPrefix})
		}
	}
	defer bus.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	projMetrics := newProjectionMetrics(reg)

	var projector *projections.Projector
	onApplied := func(ev events.Envelope, at time.Time) {
		// Events applied before the start-up catch-up ends are replay, not lag.
		projMetrics.applied(ev, at, projector.Ready())
		if cache != nil {
			cache.Add(ev)
		}
	}
	projector, err = projections.NewProjector(projections.ProjectorConfig{
		HeadCheckInterval: cfg.HeadCheckInterval,
		OnApplied:         onApplied,
		Initial:           cached,
		Checkpoints:       checkpoints,
		OnRestored:        onRestored,
	}, store, bus, log)
	if err != nil {
		return err
	}
	relay := events.NewRelay(store, bus, events.RelayConfig{MaxBacklog: cfg.StreamMaxLen}, log)

	res, err := newResilience(cfg, rdb, projector, reg, upstreamRoots, log)
	if err != nil {
		return err
	}
	tp, stopTracing, err := setupTracing(ctx, "tenantgate", log)
	if err != nil {
		return err
	}
	defer func() {
		// After the listeners have drained: flush the last spans, bounded.
		flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := stopTracing(flushCtx); err != nil {
			log.Warn("tracing: flush on shutdown", "err", err)
		}
	}()
	pxDeps := res.proxyDeps(projector, reg)
	pxDeps.Tracer = tp.Tracer("github.com/tenantgate/gateway/proxy")
	px, err := proxy.New(proxy.Config{
		MaxHeaderBytes:      cfg.MaxHeaderBytes,
		MaxBodyBytes:        bodyLimit(cfg.MaxBodyBytes),
		ReadTimeout:         cfg.ReadTimeout,
		WriteTimeout:        cfg.WriteTimeout,
		IdleTimeout:         cfg.IdleTimeout,
		MaxConns:            cfg.MaxConns,
		MaxConnsPerUpstream: cfg.UpstreamMaxConns,
		TunnelIdleTimeout:   cfg.WSIdleTimeout,
		TrustedProxies:      cfg.TrustedProxies,
		UpstreamRoots:       upstreamRoots,
		Log:                 log,
		AccessLog:           accessLog,
	}, pxDeps)
	if err != nil {
		return err
	}
	var draining atomic.Bool
	roll, err := newInstanceRoll(cfg, rdb, projector, store, &draining, log)
	if err != nil {
		return err
	}
	adm, err := admin.New(admin.Config{AdminKey: cfg.AdminAPIKey, InstanceID: cfg.InstanceID}, admin.Deps{
		Store:     store,
		Projector: projector,
		BusKind:   bus.Kind(),
		Notify:    relay.Notify,
		Log:       log,
		Tracer:    tp.Tracer("github.com/tenantgate/gateway/admin"),
		Instances: roll,
		AuthFailures: promauto.With(reg).NewCounter(prometheus.CounterOpts{
			Name: "gateway_admin_auth_failures_total",
			Help: "Admin requests refused for a missing or invalid admin key.",
		}),
		Upstreams: upstreamStates{breakers: res.breakers, health: res.health},
	})
	if err != nil {
		return err
	}

	probes := probeHandlers{projector: projector, draining: &draining}
	metrics := adaptor.HTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))

	mainApp := fiber.New(px.FiberConfig())
	probes.mount(mainApp)
	var adminApp *fiber.App
	if cfg.AdminPort != 0 {
		// The admin listener is private: /metrics needs no key there, and the
		// main port proxies /admin and /metrics like any other path.
		adminApp = fiber.New(fiber.Config{
			DisableStartupMessage: true, BodyLimit: admin.DefaultDocumentLimit + 1<<20, ErrorHandler: proxy.ErrorHandler,
			ReadBufferSize: px.FiberConfig().ReadBufferSize, // the same header limit as the main listener
		})
		probes.mount(adminApp)
		adminApp.Get("/metrics", metrics)
		adm.Mount(adminApp)
	} else {
		mainApp.Get("/metrics", requireAdminKey(adm), metrics)
		adm.Mount(mainApp)
	}
	mainApp.Use(px.Handler)
	// No handler's unread request body may be read as the next request.
	mainApp.Server().Handler = proxy.SettleBodies(mainApp.Server().Handler)

	// Background loops run until the listeners have drained.
	bgCtx, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()
	background, bgCtx := errgroup.WithContext(bgCtx)
	background.Go(func() error { return projector.Run(bgCtx) })
	background.Go(func() error { return relay.Run(bgCtx) })
	background.Go(func() error { return roll.Run(bgCtx) })
	if cache != nil {
		background.Go(func() error { return cache.Run(bgCtx) })
	}
	if lazy != nil {
		background.Go(func() error { return lazy.wait(bgCtx) })
	}
	if checkpoints != nil {
		background.Go(func() error { return checkpoints.Run(bgCtx) })
	}
	for _, loop := range res.loops {
		background.Go(func() error { return loop(bgCtx) })
	}
	if certs != nil {
		background.Go(func() error { return certs.Run(bgCtx) })
	}

	listeners, err := listen(cfg)
	if err != nil {
		return err
	}
	listeners = tlsListeners(listeners, certs)
	serving, servingCtx := errgroup.WithContext(ctx)
	serving.Go(func() error { return px.ServeListener(mainApp, listeners[0]) })
	if adminApp != nil {
		serving.Go(func() error { return adminApp.Listener(px.Guard(listeners[1])) })
	}
	log.Info("gateway listening", "addr", listeners[0].Addr().String(), "admin_port", cfg.AdminPort,
		"tls", certs != nil, "store", store.Kind(), "bus", bus.Kind())

	select {
	case <-servingCtx.Done(): // a signal, or a listener failed
	case <-bgCtx.Done(): // a background loop failed
	}
	log.Info("shutting down: draining")
	draining.Store(true)
	roll.Changed() // the others see it not ready before it leaves
	time.Sleep(cfg.ShutdownDelay)
	// Open WebSocket tunnels get the same ShutdownTimeout as requests in
	// flight (the server does not count them), then a close frame 1001.
	drainCtx, stopDrain := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer stopDrain()
	tunnelsDrained := make(chan error, 1)
	go func() { tunnelsDrained <- px.DrainTunnels(drainCtx) }()
	var shutdownErr error
	for _, app := range []*fiber.App{mainApp, adminApp} {
		if app != nil {
			shutdownErr = errors.Join(shutdownErr, app.ShutdownWithTimeout(cfg.ShutdownTimeout))
		}
	}
	shutdownErr = errors.Join(shutdownErr, <-tunnelsDrained)
	// Streamed answers still going after the drain are cut (the clients
	// see a truncated body), so that their connections close.
	if n := px.CloseStreams(); n > 0 {
		log.Warn("shutdown: streams cut after the drain", "streams", n)
	}
	stopBackground()
	listenErr := serving.Wait()
	bgErr := background.Wait()
	saveShutdownCheckpoint(ctx, cfg, checkpoints, projector.Snapshot(), log)
	if bgErr != nil && !errors.Is(bgErr, context.Canceled) {
		return fmt.Errorf("background: %w", bgErr)
	}
	if listenErr != nil && !errors.Is(listenErr, context.Canceled) {
		return fmt.Errorf("listen: %w", listenErr)
	}
	if shutdownErr != nil {
		log.Warn("shutdown did not finish in time", "err", shutdownErr)
	}
	log.Info("stopped")
	return nil
}

// bodyLimit is MAX_BODY_BYTES for the proxy: 0 there means no limit.
func bodyLimit(n int64) int64 {
	if n == 0 {
		return proxy.NoLimit
	}
	return n
}

func listen(cfg Config) ([]net.Listener, error) {
	main, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)))
	if err != nil {
		return nil, fmt.Errorf("PORT: %w", err)
	}
	lns := []net.Listener{main}
	if cfg.AdminPort != 0 {
		adm, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.AdminPort)))
		if err != nil {
			_ = main.Close()
			return nil, fmt.Errorf("ADMIN_PORT: %w", err)
		}
		lns = append(lns, adm)
	}
	return lns, nil
}

// probeHandlers serve /health and /ready.
type probeHandlers struct {
	projector interface{ Ready() bool }
	draining  *atomic.Bool
}

func (p probeHandlers) mount(app *fiber.App) {
	app.All("/health", func(c *fiber.Ctx) error {
		return c.JSON(fiber.Map{"status": "ok"})
	})
	app.All("/ready", func(c *fiber.Ctx) error {
		switch {
		case p.draining.Load():
			return c.Status(fiber.StatusServiceUnavailable).JSON(fiber.Map{"status": "not_ready", "reason": "draining"})
		case !p.projector.Ready():
			return c.Status(fiber.StatusServiceUnavailable).JSON(fiber.Map{"status": "not_ready", "reason": "catching up with the event store"})
		}
		return c.JSON(fiber.Map{"status": "ready"})
	})
}

// requireAdminKey accepts the admin key as X-Admin-Key or as a bearer token
// (what Prometheus scrapers send).
func requireAdminKey(adm *admin.API) fiber.Handler {
	return func(c *fiber.Ctx) error {
		key := c.Request().Header.Peek("X-Admin-Key")
		if auth := c.Request().Header.Peek(fiber.HeaderAuthorization); len(key) == 0 && len(auth) > 7 && strings.EqualFold(string(auth[:7]), "bearer ") {
			key = auth[7:]
		}
		if !adm.IsAdminKey(key) {
			return proxy.WriteError(c, fiber.StatusUnauthorized, "unauthorized", "missing or invalid admin key")
		}
		return c.Next()
	}
}

// projectionMetrics expose how current this instance's configuration is.
type projectionMetrics struct {
	appliedSeq prometheus.Gauge
	lag        prometheus.Histogram
}

func newProjectionMetrics(reg prometheus.Registerer) *projectionMetrics {
	m := &projectionMetrics{
		appliedSeq: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gateway_projection_applied_seq", Help: "Seq of the last event applied to this instance's snapshot.",
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gateway_config_lag_seconds",
			Help:    "Time from an event's commit to its application on this instance.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
	}
	reg.MustRegister(m.appliedSeq, m.lag)
	return m
}

func (m *projectionMetrics) applied(ev events.Envelope, at time.Time, live bool) {
	m.appliedSeq.Set(float64(ev.Seq))
	if lag := at.Sub(ev.OccurredAt); lag >= 0 && live {
		m.lag.Observe(lag.Seconds())
	}
}
