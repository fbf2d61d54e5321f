package proxy

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tenantgate/gateway/projections"
	"github.com/tenantgate/gateway/resilience/breaker"
	"github.com/tenantgate/gateway/resilience/health"
	"github.com/tenantgate/gateway/resilience/ratelimit"
	"github.com/tenantgate/gateway/resilience/retry"
	"go.opentelemetry.io/otel/trace"
)

// Config holds the data plane's limits. Zero fields take their defaults.
type Config struct {
	// MaxHeaderBytes bounds the request line plus headers. Default 16 KiB;
	// larger requests get 431.
	MaxHeaderBytes int
	// MaxBodyBytes bounds a proxied request body, which is streamed to the
	// upstream, not buffered. Default 32 MiB; larger bodies get 413
	// payload_too_large (a chunked body that grows past it is cut off).
	// NoLimit: none.
	MaxBodyBytes int64
	// MaxReplayBytes: request bodies with a Content-Length up to this size
	// are kept so that a failed attempt can be retried with the same body;
	// larger or chunked bodies stream and are never retried. Default 1 MiB.
	// Responses have no limit: they stream (see stream).
	MaxReplayBytes int64
	// ReadTimeout bounds reading a whole request, body included (slowloris
	// protection). Default 30s.
	ReadTimeout time.Duration
	// WriteTimeout bounds each write of a response to the client (a client
	// that takes no bytes for this long is dropped), not the whole response,
	// so a long stream is never cut. Default 60s.
	WriteTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long. Default 120s.
	IdleTimeout time.Duration
	// TunnelIdleTimeout closes a WebSocket tunnel through which nothing
	// went either way for this long. Default 10m.
	TunnelIdleTimeout time.Duration
	// MaxConns caps concurrent client connections. Default 256 Ki (Fiber's).
	MaxConns int
	// MaxConnsPerUpstream caps connections to one upstream host. Default 1024.
	MaxConnsPerUpstream int
	// TrustedProxies are the CIDRs or IPs of proxies in front of the
	// gateway: their X-Forwarded-For/-Proto/-Host are extended or kept. From
	// anyone else those headers are replaced, so a client cannot spoof what
	// the upstream sees. Default none.
	TrustedProxies []string
	// UpstreamRoots verify the certificates of https upstreams, with the
	// upstream's host as SNI and as the name to verify. Default nil: the
	// system roots. A certificate that does not verify is a connection
	// error: 502 upstream_unavailable, a breaker failure, and no retry on
	// that upstream.
	UpstreamRoots *x509.CertPool
	// Log receives one access-log line per request (at Info) and errors.
	// Default slog.Default().
	Log *slog.Logger
	// AccessLog, when set, receives the access-log lines instead of Log:
	// the same JSON as slog's JSONHandler writes (time, level, msg and the
	// same fields), encoded without slog at a fraction of its cost, one
	// Write per line. It must be safe for concurrent use and should buffer
	// (one syscall per line would cost more than the rest of the request).
	AccessLog io.Writer
}

// Defaults of Config.
const (
	DefaultMaxHeaderBytes      = 16 << 10
	DefaultMaxBodyBytes        = 32 << 20
	DefaultMaxReplayBytes      = 1 << 20
	NoLimit                    = -1 // MaxBodyBytes: no limit
	DefaultReadTimeout         = 30 * time.Second
	DefaultWriteTimeout        = 60 * time.Second
	DefaultIdleTimeout         = 120 * time.Second
	DefaultTunnelIdleTimeout   = 10 * time.Minute
	DefaultMaxConns            = 256 * 1024
	DefaultMaxConnsPerUpstream = 1024
	maxInt32                   = 1<<31 - 1
	headerSlack                = 1 << 10 // request line room above MaxHeaderBytes
)

func (c Config) withDefaults() Config {
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxReplayBytes == 0 {
		c.MaxReplayBytes = DefaultMaxReplayBytes
		if c.MaxBodyBytes != NoLimit {
			c.MaxReplayBytes = min(c.MaxReplayBytes, c.MaxBodyBytes)
		}
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.TunnelIdleTimeout == 0 {
		c.TunnelIdleTimeout = DefaultTunnelIdleTimeout
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxConnsPerUpstream == 0 {
		c.MaxConnsPerUpstream = DefaultMaxConnsPerUpstream
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return c
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.MaxHeaderBytes < 1024 || c.MaxHeaderBytes > 1<<20:
		return fmt.Errorf("proxy: MaxHeaderBytes %d out of range 1 KiB..1 MiB", c.MaxHeaderBytes)
	case c.MaxBodyBytes < NoLimit:
		return fmt.Errorf("proxy: MaxBodyBytes %d must be positive or NoLimit", c.MaxBodyBytes)
	case c.MaxReplayBytes < 0 || c.MaxReplayBytes > maxInt32 || (c.MaxBodyBytes != NoLimit && c.MaxReplayBytes > c.MaxBodyBytes):
		return fmt.Errorf("proxy: MaxReplayBytes %d out of range 0..MaxBodyBytes", c.MaxReplayBytes)
	case c.ReadTimeout < 0 || c.WriteTimeout < 0 || c.IdleTimeout < 0 || c.TunnelIdleTimeout < 0:
		return errors.New("proxy: timeouts must not be negative")
	case c.MaxConns < 0 || c.MaxConnsPerUpstream < 0:
		return errors.New("proxy: connection limits must not be negative")
	}
	_, err := parseTrusted(c.TrustedProxies)
	return err
}

// Snapshots hands out the current configuration snapshot.
// *projections.Projector satisfies it.
type Snapshots interface {
	Snapshot() *projections.Snapshot
}

// Deps are the data plane's collaborators. Only Snapshots is required; every
// other nil field switches its mechanism off.
type Deps struct {
	Snapshots Snapshots
	Limiter   ratelimit.Limiter     // nil: no rate limiting
	Breakers  breaker.Breakers      // nil: no circuit breakers
	Health    health.Checker        // nil: every upstream healthy
	Budgets   *retry.Budgets        // nil: retries limited only by maxRetries
	Metrics   prometheus.Registerer // nil: no metrics
	Tracer    trace.Tracer          // nil (or no-op): no spans, traceparent untouched
}

// HeaderAPIKey carries a tenant's API key; HeaderAdminKey the admin key.
// Neither is ever forwarded upstream.
const (
	HeaderAPIKey   = "X-API-Key"
	HeaderAdminKey = "X-Admin-Key"
)

// FiberConfig is what the main listener's fiber.App needs: the request body
// streamed (never buffered whole), the header limit as the read buffer, the
// slowloris timeouts, the connection cap, and an error handler that renders
// the contract's JSON (431 for oversized headers, 413, 408, 400 ...).
func (p *Proxy) FiberConfig() fiber.Config {
	return fiber.Config{
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		// With streaming, BodyLimit only caps what is read ahead; the
		// handler enforces MaxBodyBytes itself.
		BodyLimit:                 p.bodyLimit(),
		ReadBufferSize:            p.cfg.MaxHeaderBytes + headerSlack,
		ReadTimeout:               p.cfg.ReadTimeout,
		WriteTimeout:              p.cfg.WriteTimeout,
		IdleTimeout:               p.cfg.IdleTimeout,
		Concurrency:               p.cfg.MaxConns,
		DisableStartupMessage:     true,
		DisableDefaultContentType: true,
		ErrorHandler:              ErrorHandler,
	}
}

// bodyLimit is the server's BodyLimit: with streaming it only bounds what
// is read ahead of the handler, so NoLimit is the largest it takes.
func (p *Proxy) bodyLimit() int {
	if p.cfg.MaxBodyBytes == NoLimit || p.cfg.MaxBodyBytes > maxInt32 {
		return maxInt32
	}
	return int(p.cfg.MaxBodyBytes)
}
