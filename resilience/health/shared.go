package health

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/tenantgate/gateway/resilience/announce"
)

// SharedConfig configures NewShared. Zero fields take their defaults.
type SharedConfig struct {
	Config
	// Prefix is put before every key and the channel:
	// <Prefix>health:{<tenantId>}:<routeId>:<urlHash> (status; a tenant's
	// keys share a Cluster hash slot), the same with ":lease" (who probes)
	// and <Prefix>health-events. Default "".
	Prefix string
	// InstanceID holds the leases of this instance. Default: random.
	InstanceID string
	// RedisTimeout bounds one Redis call. Default 500ms.
	RedisTimeout time.Duration
}

// Shared probes each upstream from one instance of the cluster at a time.
//
// When a target is due, every instance asks for its lease (SET NX PX, renewed
// by the holder, expiring after two intervals plus the probe timeout, so it
// moves if its holder dies). The holder probes and applies the result to
// the status in Redis with one script, which counts consecutive successes and
// failures there (so they survive a change of holder) and publishes on
// <Prefix>health-events when the status flips. The other instances read the
// status key instead of probing, and apply announcements as they come.
//
// When Redis fails, each instance probes on its own until it is back.
type Shared struct {
	*core
	client   redis.UniversalClient
	scfg     SharedConfig
	channel  string
	listener *announce.Listener
	logged   announce.LogThrottle
}

// NewShared returns a cluster-wide checker; call SetTargets and Run.
func NewShared(client redis.UniversalClient, cfg SharedConfig, log *slog.Logger) (*Shared, error) {
	if client == nil {
		return nil, errors.New("health: nil Redis client")
	}
	if cfg.RedisTimeout == 0 {
		cfg.RedisTimeout = 500 * time.Millisecond
	}
	if cfg.RedisTimeout < 0 {
		return nil, errors.New("health: RedisTimeout must be positive")
	}
	if cfg.InstanceID == "" {
		cfg.InstanceID = announce.NewInstanceID()
	}
	c, err := newCore(cfg.Config, log)
	if err != nil {
		return nil, err
	}
	s := &Shared{core: c, client: client, scfg: cfg, channel: cfg.Prefix + "health-events"}
	c.check = s.checkShared
	s.listener = &announce.Listener{
		Client:    client,
		Channel:   s.channel,
		OnMessage: s.applyAnnouncement,
		OnError:   func(err error) { s.redisFailed("health subscription", err) },
	}
	return s, nil
}

// RedisKey is the key of k's shared status.
func (s *Shared) RedisKey(k Key) string {
	return announce.TenantKey(s.scfg.Prefix, "health", k.TenantID, k.RouteID, announce.URLHash(k.Upstream))
}

// Run probes (or follows the prober) and listens to announcements until ctx ends.
func (s *Shared) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.run(ctx) })
	g.Go(func() error { return s.listener.Run(ctx) })
	return g.Wait()
}

// announcement is a status flip on the channel.
type announcement struct {
	TenantID string `json:"t"`
	RouteID  string `json:"r"`
	Upstream string `json:"u"`
	Healthy  bool   `json:"h"`
}

func (s *Shared) checkShared(ctx context.Context, t Target, st *status) {
	interval := t.Check.Interval
	key := s.RedisKey(t.Key)
	rctx, cancel := context.WithTimeout(ctx, s.scfg.RedisTimeout)
	ttl := 2*interval + t.Check.Timeout
	held, err := leaseScript.Run(rctx, s.client, []string{key + ":lease"}, s.scfg.InstanceID, ttl.Milliseconds()).Int()
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			s.redisFailed("health lease", err)
			s.checkLocal(ctx, t, st)
		}
		return
	}
	if held == 0 {
		s.follow(ctx, t, st, key)
		return
	}
	ok := s.probe(ctx, t)
	if ctx.Err() != nil {
		return
	}
	up, _ := json.Marshal(announcement{TenantID: t.Key.TenantID, RouteID: t.Key.RouteID, Upstream: t.Key.Upstream, Healthy: true})
	down, _ := json.Marshal(announcement{TenantID: t.Key.TenantID, RouteID: t.Key.RouteID, Upstream: t.Key.Upstream})
	okArg := 0
	if ok {
		okArg = 1
	}
	rctx, cancel = context.WithTimeout(ctx, s.scfg.RedisTimeout)
	healthy, err := resultScript.Run(rctx, s.client, []string{key}, okArg, t.Check.HealthyThreshold,
		t.Check.UnhealthyThreshold, (10*interval + time.Minute).Milliseconds(), s.channel, up, down).Int()
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			s.redisFailed("health result", err)
			if st.record(ok, t.Check) {
				s.flipped(t, ok, "local")
			}
		}
		return
	}
	if st.set(healthy == 1) {
		s.flipped(t, healthy == 1, "probe")
	}
}

// follow reads the status written by the instance holding the lease. An
// announcement that arrives meanwhile wins over the read, which may predate it.
func (s *Shared) follow(ctx context.Context, t Target, st *status, key string) {
	rctx, cancel := context.WithTimeout(ctx, s.scfg.RedisTimeout)
	defer cancel()
	heard := st.heardSoFar()
	v, err := s.client.HGet(rctx, key, "healthy").Result()
	if errors.Is(err, redis.Nil) {
		return // not probed yet
	}
	if err != nil {
		if ctx.Err() == nil {
			s.redisFailed("health status", err)
		}
		return
	}
	if st.setRead(v == "1", heard) {
		s.flipped(t, v == "1", "cluster")
	}
}

// applyAnnouncement applies another instance's status flip.
func (s *Shared) applyAnnouncement(payload string) {
	var a announcement
	if err := json.Unmarshal([]byte(payload), &a); err != nil {
		return
	}
	k := Key{TenantID: a.TenantID, RouteID: a.RouteID, Upstream: a.Upstream}
	if v, ok := s.statuses.Load(k); ok && v.(*status).set(a.Healthy) {
		s.flipped(Target{Key: k}, a.Healthy, "cluster")
	}
}

// redisFailed counts every failure and logs at most once every 30 s.
func (s *Shared) redisFailed(what string, err error) {
	s.m.redisError()
	if !s.logged.Allow(30 * time.Second) {
		return
	}
	s.log.Warn("redis unavailable, health checks run locally", "op", what, "err", err)
}

// leaseScript: KEYS[1] the lease; ARGV instance, ttl ms. 1 if we hold it.
var leaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
`)

// resultScript: KEYS[1] the status hash; ARGV ok (1/0), healthyThreshold,
// unhealthyThreshold, ttl ms, channel, message if healthy, message if not.
// Returns the status (1 healthy).
var resultScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'healthy', 's', 'f')
local healthy = h[1] ~= '0'
local s = tonumber(h[2] or '0')
local f = tonumber(h[3] or '0')
local was = healthy
if ARGV[1] == '1' then
  s = s + 1
  f = 0
  if not healthy and s >= tonumber(ARGV[2]) then healthy = true end
else
  f = f + 1
  s = 0
  if healthy and f >= tonumber(ARGV[3]) then healthy = false end
end
local v = '0'
if healthy then v = '1' end
redis.call('HSET', KEYS[1], 'healthy', v, 's', s, 'f', f)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if healthy ~= was then
  if healthy then redis.call('PUBLISH', ARGV[5], ARGV[6]) else redis.call('PUBLISH', ARGV[5], ARGV[7]) end
end
if healthy then return 1 end
return 0
`)
