package breaker

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/tenantgate/gateway/resilience/announce"
)

// SharedConfig configures NewShared. Zero fields take their defaults.
type SharedConfig struct {
	// Prefix is put before every key and the channel:
	// <Prefix>cb:{<tenantId>}:<routeId>:<urlHash> (a tenant's keys share a
	// Cluster hash slot) and <Prefix>cb-events. Default "".
	Prefix string
	// InstanceID tells this instance's announcements from others'. Default: random.
	InstanceID string
	// Timeout bounds one write or announcement. Default 500ms.
	Timeout time.Duration
	// Registerer receives the breaker metrics. Nil: none.
	Registerer prometheus.Registerer
}

// Shared is a Local whose openings and closings are shared through Redis.
//
// Failures are counted per instance; when one instance opens a breaker it
// writes the key (with the opening time, expiring a minute after the
// timeout) and publishes the change on <Prefix>cb-events, in one pipelined
// round trip off the request path. Every instance applies announcements to
// its local copy, and on (re)subscribing reads the keys, so an instance that
// starts or reconnects learns the breakers opened meanwhile. Half-open probes
// are admitted per instance (successThreshold at a time on each); the
// instance whose probes succeed announces the closing.
//
// While Redis is away each instance keeps working on its own breakers.
type Shared struct {
	*Local
	client   redis.UniversalClient
	cfg      SharedConfig
	log      *slog.Logger
	channel  string
	listener *announce.Listener
	logged   announce.LogThrottle
}

// NewShared returns shared breakers; call Run to receive announcements.
func NewShared(client redis.UniversalClient, cfg SharedConfig, log *slog.Logger) (*Shared, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = 500 * time.Millisecond
	}
	if cfg.InstanceID == "" {
		cfg.InstanceID = announce.NewInstanceID()
	}
	if cfg.Timeout < 0 {
		return nil, errors.New("breaker: Timeout must be positive")
	}
	if client == nil {
		return nil, errors.New("breaker: nil Redis client")
	}
	if log == nil {
		log = slog.Default()
	}
	local, err := NewLocalWith(LocalConfig{Registerer: cfg.Registerer})
	if err != nil {
		return nil, err
	}
	s := &Shared{Local: local, client: client, cfg: cfg, log: log.With("component", "breaker"),
		channel: cfg.Prefix + "cb-events"}
	local.notify = s.announce
	s.listener = &announce.Listener{
		Client:  client,
		Channel: s.channel,
		// On (re)subscribing: learn the breakers opened meanwhile, and tell
		// the others about those opened here while Redis was away.
		OnSubscribed: func(ctx context.Context) error {
			if err := s.resync(ctx); err != nil {
				return err
			}
			s.republish()
			return nil
		},
		OnMessage: func(payload string) { s.apply([]byte(payload), false) },
		OnError:   func(err error) { s.redisFailed("breaker subscription", err) },
	}
	return s, nil
}

// RedisKey is the key holding k's shared state.
func (s *Shared) RedisKey(k Key) string {
	return announce.TenantKey(s.cfg.Prefix, "cb", k.TenantID, k.RouteID, announce.URLHash(k.Upstream))
}

// announcement is both the message on the channel and the value of the key.
type announcement struct {
	TenantID  string `json:"t"`
	RouteID   string `json:"r"`
	Upstream  string `json:"u"`
	State     string `json:"s"`            // "open" or "closed"
	OpenedAt  int64  `json:"at,omitempty"` // Unix ms, for open
	TimeoutMs int    `json:"to,omitempty"`
	Instance  string `json:"i"`
}

// announce shares a local opening or closing, in the background so the
// failing request does not wait for Redis.
func (s *Shared) announce(k Key, cfg Config, tr transition) {
	if tr.to == HalfOpen {
		return // every instance goes half-open on its own clock
	}
	a := announcement{TenantID: k.TenantID, RouteID: k.RouteID, Upstream: k.Upstream, Instance: s.cfg.InstanceID}
	timeout := cfg.OpenFor
	if tr.to == Open {
		a.State, a.OpenedAt, a.TimeoutMs = "open", tr.at.UnixMilli(), int(timeout.Milliseconds())
	} else {
		a.State = "closed"
	}
	go func() {
		body, _ := json.Marshal(a)
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
		defer cancel()
		_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
			if a.State == "open" {
				p.Set(ctx, s.RedisKey(k), body, timeout+time.Minute)
			} else {
				p.Del(ctx, s.RedisKey(k))
			}
			p.Publish(ctx, s.channel, body)
			return nil
		})
		if err != nil {
			s.redisFailed("announce breaker change", err)
		}
	}()
}

// Run receives announcements until ctx ends. It resubscribes after Redis
// failures and reloads the shared state each time it (re)subscribes.
func (s *Shared) Run(ctx context.Context) error { return s.listener.Run(ctx) }

// resync applies every breaker opened in the cluster (on every master of a
// Redis Cluster).
func (s *Shared) resync(ctx context.Context) error {
	return announce.ScanValues(ctx, s.client, s.cfg.Prefix+"cb:*", func(v []byte) { s.apply(v, true) })
}

// republish announces again the breakers open here, so that openings made
// while Redis was away reach the other instances once it is back. Their
// opening times are kept, so instances that knew them already see no change.
func (s *Shared) republish() {
	now := s.now()
	s.breakers.Range(func(k, v any) bool {
		b := v.(*breaker)
		b.mu.Lock()
		open, at, timeout := b.state == Open, b.openedAt, b.timeout
		b.mu.Unlock()
		if open && now.Sub(at) < timeout {
			s.announce(k.(Key), Config{OpenFor: timeout}, transition{from: Closed, to: Open, at: at})
		}
		return true
	})
}

func (s *Shared) apply(body []byte, fromKey bool) {
	var a announcement
	if err := json.Unmarshal(body, &a); err != nil {
		s.log.Warn("ignoring malformed breaker announcement", "err", err)
		return
	}
	if a.Instance == s.cfg.InstanceID && !fromKey {
		return // our own change, applied already
	}
	k := Key{TenantID: a.TenantID, RouteID: a.RouteID, Upstream: a.Upstream}
	switch a.State {
	case "open":
		// Opened `age` ago on the other instance's clock; count the timeout
		// from there, on our monotonic clock.
		age := min(max(time.Since(time.UnixMilli(a.OpenedAt)), 0), time.Duration(a.TimeoutMs)*time.Millisecond)
		s.force(k, Open, s.now().Add(-age), time.Duration(a.TimeoutMs)*time.Millisecond)
	case "closed":
		s.force(k, Closed, time.Time{}, 0)
	}
}

// redisFailed logs at most once every 30 s and counts every failure.
func (s *Shared) redisFailed(what string, err error) {
	s.m.redisError()
	if !s.logged.Allow(30 * time.Second) {
		return
	}
	s.log.Warn("redis unavailable, circuit breakers work locally", "op", what, "err", err)
}
