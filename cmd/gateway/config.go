package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Config is the gateway's configuration, read from the environment. Every
// field names its variable and default; see the README's configuration table.
type Config struct {
	Port      int    // PORT, default 3000: proxy traffic, /health, /ready (and /admin, /metrics without ADMIN_PORT)
	AdminPort int    // ADMIN_PORT, default unset: a second listener for /admin and /metrics
	Host      string // HOST, default "" (all interfaces)

	DatabaseURL string // DATABASE_URL: PostgreSQL; unset means the embedded SQLite store
	RedisURL    string // REDIS_URL: Redis Streams bus and shared runtime state; needs DATABASE_URL
	RedisPrefix string // REDIS_PREFIX, default "gw:": prefix of every Redis key
	DataDir     string // DATA_DIR, default ./data: the embedded store

	AdminAPIKey       string // ADMIN_API_KEY: required with DATABASE_URL; generated and printed once when embedded
	adminKeyGenerated bool

	InstanceID string     // INSTANCE_ID, default hostname-<random>
	LogLevel   slog.Level // LOG_LEVEL, default info (debug, info, warn, error)
	LogFormat  string     // LOG_FORMAT, default json when distributed, text when embedded

	StreamMaxLen      int64         // STREAM_MAXLEN, default 100000: approximate cap of the Redis stream
	HeadCheckInterval time.Duration // HEAD_CHECK_INTERVAL, default 1s: catch up from the store if the bus was quiet
	ShutdownTimeout   time.Duration // SHUTDOWN_TIMEOUT, default 10s: drain time for in-flight requests and open tunnels
	ShutdownDelay     time.Duration // SHUTDOWN_DELAY, default 0: time /ready reports 503 before the listener stops

	MaxHeaderBytes int           // MAX_HEADER_BYTES, default 16384: larger request headers get 431
	MaxBodyBytes   int64         // MAX_BODY_BYTES, default 33554432 (32 MiB): larger proxied bodies get 413; 0: no limit
	ReadTimeout    time.Duration // READ_TIMEOUT, default 30s
	WriteTimeout   time.Duration // WRITE_TIMEOUT, default 60s
	IdleTimeout    time.Duration // IDLE_TIMEOUT, default 120s
	WSIdleTimeout  time.Duration // WS_IDLE_TIMEOUT, default 10m: a WebSocket tunnel idle this long is closed
	MaxConns       int           // MAX_CONNS, default 10000 concurrent connections
	// UPSTREAM_MAX_CONNS, default 1024: connections to one upstream host;
	// each open stream holds one for as long as it lasts.
	UpstreamMaxConns int
	TrustedProxies   []string // TRUSTED_PROXIES, default none: comma-separated IPs/CIDRs whose X-Forwarded-For is kept

	TLSCertFile    string // TLS_CERT_FILE, default unset: PEM certificate (chain allowed); with TLS_KEY_FILE every listener is HTTPS only
	TLSKeyFile     string // TLS_KEY_FILE, default unset: PEM private key of TLS_CERT_FILE
	UpstreamCAFile string // UPSTREAM_CA_FILE, default unset: PEM bundle trusted for https upstreams besides the system roots

	RateLimitFailClosed bool // RATE_LIMIT_FAIL_CLOSED, default false: refuse instead of limiting locally when Redis is down

	// SNAPSHOT_CACHE, default true: with DATABASE_URL, keep the applied events
	// under DATA_DIR so a restart while the store is down serves the last
	// known configuration.
	SnapshotCache bool
	failpoint     string // TEST_FAILPOINT: a crash the fault tests play; never set in production

	// CHECKPOINT_INTERVAL, default 10000: a checkpoint of the state is
	// stored every this many events (and at shutdown); 0 writes none (those
	// in the store are still used).
	CheckpointInterval int64

	redis redisTarget // REDIS_URL parsed: one server, a Sentinel set or a Cluster
}

// Distributed reports whether the gateway runs on PostgreSQL (and Redis).
func (c Config) Distributed() bool { return c.DatabaseURL != "" }

// loadConfig reads and validates the configuration. An error names the variable.
// Only serving needs the admin key: the offline subcommands (migrate, replay,
// export, apply) work on the store directly.
func loadConfig(getenv func(string) string, serving bool) (Config, error) {
	r := envReader{getenv: getenv}
	c := Config{
		Port:                r.int("PORT", 3000, 1, 65535),
		AdminPort:           r.int("ADMIN_PORT", 0, 1, 65535),
		Host:                r.str("HOST", ""),
		DatabaseURL:         r.str("DATABASE_URL", ""),
		RedisURL:            r.str("REDIS_URL", ""),
		RedisPrefix:         r.str("REDIS_PREFIX", "gw:"),
		DataDir:             r.str("DATA_DIR", "./data"),
		AdminAPIKey:         r.str("ADMIN_API_KEY", ""),
		InstanceID:          r.str("INSTANCE_ID", ""),
		LogFormat:           r.str("LOG_FORMAT", ""),
		StreamMaxLen:        int64(r.int("STREAM_MAXLEN", 100000, 100, 1<<40)),
		HeadCheckInterval:   r.duration("HEAD_CHECK_INTERVAL", time.Second),
		ShutdownTimeout:     r.duration("SHUTDOWN_TIMEOUT", 10*time.Second),
		ShutdownDelay:       r.duration("SHUTDOWN_DELAY", 0),
		MaxHeaderBytes:      r.int("MAX_HEADER_BYTES", 16<<10, 1<<10, 1<<20),
		MaxBodyBytes:        int64(r.int("MAX_BODY_BYTES", 32<<20, 0, 1<<40)),
		ReadTimeout:         r.duration("READ_TIMEOUT", 30*time.Second),
		WriteTimeout:        r.duration("WRITE_TIMEOUT", 60*time.Second),
		IdleTimeout:         r.duration("IDLE_TIMEOUT", 120*time.Second),
		WSIdleTimeout:       r.duration("WS_IDLE_TIMEOUT", 10*time.Minute),
		MaxConns:            r.int("MAX_CONNS", 10000, 1, 1<<24),
		UpstreamMaxConns:    r.int("UPSTREAM_MAX_CONNS", 1024, 1, 1<<20),
		TrustedProxies:      r.list("TRUSTED_PROXIES"),
		TLSCertFile:         r.str("TLS_CERT_FILE", ""),
		TLSKeyFile:          r.str("TLS_KEY_FILE", ""),
		UpstreamCAFile:      r.str("UPSTREAM_CA_FILE", ""),
		RateLimitFailClosed: r.bool("RATE_LIMIT_FAIL_CLOSED", false),
		SnapshotCache:       r.bool("SNAPSHOT_CACHE", true),
		failpoint:           r.str("TEST_FAILPOINT", ""),
		CheckpointInterval:  int64(r.int("CHECKPOINT_INTERVAL", 10000, 0, 1<<30)),
	}
	c.LogLevel = r.level("LOG_LEVEL", slog.LevelInfo)
	if r.err != nil {
		return Config{}, r.err
	}
	if c.DatabaseURL != "" {
		if u, err := url.Parse(c.DatabaseURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			return Config{}, fmt.Errorf("DATABASE_URL: must be a postgres:// URL")
		}
	}
	if c.RedisURL != "" {
		var err error
		if c.redis, err = parseRedisURL(c.RedisURL); err != nil {
			return Config{}, fmt.Errorf("REDIS_URL: %w", err)
		}
		if c.DatabaseURL == "" {
			return Config{}, fmt.Errorf("REDIS_URL: needs DATABASE_URL too (the embedded SQLite store serves one instance only)")
		}
	}
	if c.failpoint != "" && c.failpoint != "exit-after-commit" {
		return Config{}, fmt.Errorf("TEST_FAILPOINT: unknown failpoint %q (tests only: exit-after-commit)", c.failpoint)
	}
	if c.AdminPort != 0 && c.AdminPort == c.Port {
		return Config{}, fmt.Errorf("ADMIN_PORT: must differ from PORT (%d)", c.Port)
	}
	switch {
	case c.TLSCertFile != "" && c.TLSKeyFile == "":
		return Config{}, fmt.Errorf("TLS_KEY_FILE: required with TLS_CERT_FILE (set both for HTTPS, neither for plain HTTP)")
	case c.TLSCertFile == "" && c.TLSKeyFile != "":
		return Config{}, fmt.Errorf("TLS_CERT_FILE: required with TLS_KEY_FILE (set both for HTTPS, neither for plain HTTP)")
	}
	switch c.LogFormat {
	case "":
		c.LogFormat = "text"
		if c.Distributed() {
			c.LogFormat = "json"
		}
	case "json", "text":
	default:
		return Config{}, fmt.Errorf("LOG_FORMAT: must be json or text, got %q", c.LogFormat)
	}
	for _, p := range c.TrustedProxies {
		if _, _, err := net.ParseCIDR(p); err != nil && net.ParseIP(p) == nil {
			return Config{}, fmt.Errorf("TRUSTED_PROXIES: %q is neither an IP nor a CIDR", p)
		}
	}
	if c.AdminAPIKey == "" && serving {
		if c.Distributed() {
			return Config{}, fmt.Errorf("ADMIN_API_KEY: required when DATABASE_URL is set")
		}
		c.AdminAPIKey = generateAdminKey()
		c.adminKeyGenerated = true
	} else if c.AdminAPIKey != "" && len(c.AdminAPIKey) < 16 {
		return Config{}, fmt.Errorf("ADMIN_API_KEY: must be at least 16 characters")
	}
	if c.InstanceID == "" {
		host, _ := os.Hostname()
		c.InstanceID = host + "-" + generateAdminKey()[:8]
	}
	c.DataDir = filepath.Clean(c.DataDir)
	return c, nil
}

func generateAdminKey() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// envReader reads typed variables, keeping the first error.
type envReader struct {
	getenv func(string) string
	err    error
}

func (r *envReader) fail(name, format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...))
	}
}

func (r *envReader) str(name, def string) string {
	if v := strings.TrimSpace(r.getenv(name)); v != "" {
		return v
	}
	return def
}

func (r *envReader) int(name string, def, lo, hi int) int {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		r.fail(name, "must be an integer from %d to %d, got %q", lo, hi, v)
		return def
	}
	return n
}

func (r *envReader) duration(name string, def time.Duration) time.Duration {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		r.fail(name, "must be a duration such as 500ms or 10s, got %q", v)
		return def
	}
	return d
}

func (r *envReader) bool(name string, def bool) bool {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.fail(name, "must be true or false, got %q", v)
		return def
	}
	return b
}

func (r *envReader) list(name string) []string {
	var out []string
	for _, p := range strings.Split(r.getenv(name), ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (r *envReader) level(name string, def slog.Level) slog.Level {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		return def
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(v)); err != nil {
		r.fail(name, "must be debug, info, warn or error, got %q", v)
		return def
	}
	return l
}
