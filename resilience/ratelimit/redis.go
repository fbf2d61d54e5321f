package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/resilience/announce"
)

// RedisConfig configures NewRedis. Zero fields take their defaults.
type RedisConfig struct {
	// Prefix is put before every key: <Prefix>ratelimit:{<tenantId>} (the
	// braces are a Cluster hash tag, shared by the tenant's other keys).
	// Default "".
	Prefix string
	// Timeout bounds how long a request waits for Redis. Default 100ms. It
	// holds whatever the client's own timeouts are (go-redis honours context
	// deadlines on the socket only with ContextTimeoutEnabled).
	Timeout time.Duration
	// ProbeInterval is how often a Redis known to be down is pinged in the
	// background. Default 1s.
	ProbeInterval time.Duration
	// FailClosed refuses every request while Redis is unreachable instead of
	// falling back to a per-instance limiter. Default false (fail open).
	FailClosed bool
	// LeaseMinLimit: limits below it are checked with Redis on every admitted
	// request; from it on, instances lease slices of the quota. Default 100.
	LeaseMinLimit int
	// Registerer receives the limiter's counters. Nil: no metrics.
	Registerer prometheus.Registerer
	// InstanceID names this instance in lease entries. Default: random.
	InstanceID string
}

func (c *RedisConfig) defaults() {
	if c.Timeout == 0 {
		c.Timeout = 100 * time.Millisecond
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = time.Second
	}
	if c.LeaseMinLimit == 0 {
		c.LeaseMinLimit = 100
	}
	if c.InstanceID == "" {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		c.InstanceID = hex.EncodeToString(b)
	}
}

func (c *RedisConfig) validate() error {
	switch {
	case c.Timeout < 0:
		return errors.New("ratelimit: Timeout must be positive")
	case c.ProbeInterval < 0:
		return errors.New("ratelimit: ProbeInterval must be positive")
	case c.LeaseMinLimit < 1:
		return errors.New("ratelimit: LeaseMinLimit must be at least 1")
	}
	return nil
}

// Redis is the shared limiter: every instance counts a tenant's requests in
// one Redis sorted set, so the limit holds across all of them.
//
// The sorted set is a sliding log of grants. Each entry is one grant of k
// requests ("<id>:<k>") scored with the Redis time by which all k will have
// been spent; the running total is kept in the member "n" (score -1-total, so
// it never falls in a time range). One Lua script per round trip drops the
// entries that left the window, gives back the unspent part of the caller's
// previous lease, and grants up to `want` requests if the total allows.
//
// Amortization: for limits of at least LeaseMinLimit an instance asks for a
// lease of about 1% of the limit, valid for 1% of the window, and spends it
// locally. The entry is dated at the lease's end, so every request spent from
// it is inside the window its entry is counted in: the instances together
// never admit more than the limit in any window. Near the limit the script
// hands out a quarter of what is left, down to single requests, and a denial
// is remembered until the oldest entry leaves the window, so denied traffic
// makes no Redis calls either. The cost is that the window is effectively up
// to 1% longer and an idle instance's unspent lease stays counted until its
// next request gives it back: under sustained overload the cluster admits
// about 99% of the limit.
//
// github.com/go-redis/redis_rate was considered and not used: it implements
// GCRA (a leaky bucket that allows bursts against an emission schedule),
// which is not the contract's sliding window, and it has no leasing, so it
// costs one Redis call per request.
//
// When Redis fails, Redis marks it down and decides every request with a
// Local (or refuses, with FailClosed) without waiting for Redis again; a
// background probe brings it back.
type Redis struct {
	client  redis.UniversalClient
	cfg     RedisConfig
	log     *slog.Logger
	m       *metrics
	local   *Local
	tenants sync.Map // tenantID -> *leaseState
	base    time.Time
	now     func() time.Duration // time since base; tests replace it
	seq     atomic.Uint64

	down    atomic.Bool
	closed  chan struct{}
	closing sync.Once
	lastLog atomic.Int64 // unix nanos of the last "still down" log
}

// NewRedis returns a shared limiter using client.
func NewRedis(client redis.UniversalClient, cfg RedisConfig, log *slog.Logger) (*Redis, error) {
	cfg.defaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if client == nil {
		return nil, errors.New("ratelimit: nil Redis client")
	}
	if log == nil {
		log = slog.Default()
	}
	m, err := newMetrics(cfg.Registerer, "redis")
	if err != nil {
		return nil, err
	}
	fm, err := newMetrics(cfg.Registerer, "fallback")
	if err != nil {
		return nil, err
	}
	local := NewLocal()
	local.m = fm
	r := &Redis{client: client, cfg: cfg, log: log.With("component", "ratelimit"), m: m, local: local,
		base: time.Now(), closed: make(chan struct{})}
	r.now = func() time.Duration { return time.Since(r.base) }
	if m != nil {
		m.redisUp.Set(1)
	}
	return r, nil
}

// Close stops the background probe, if one runs. The client stays open.
func (r *Redis) Close() error {
	r.closing.Do(func() { close(r.closed) })
	return nil
}

// Up reports whether the limiter currently uses Redis.
func (r *Redis) Up() bool { return !r.down.Load() }

// leaseState is one tenant's local share of the quota on this instance.
type leaseState struct {
	mu       sync.Mutex
	tenant   string
	limit    int
	windowMs int64

	member   string        // the current lease's entry
	left     int           // requests of the lease not yet spent
	deadline time.Duration // the lease must be spent before this (time since base)

	relMember string // an abandoned lease to give back with the next call
	relCount  int

	remaining   int           // the server's remaining after the last grant
	reset       time.Time     // the server's reset, as local wall time
	deniedUntil time.Duration // a denial is remembered until then
}

// abandon stops spending the current lease; its unspent part goes back to
// Redis with the next call.
func (s *leaseState) abandon() {
	if s.left > 0 && s.member != "" {
		s.relMember, s.relCount = s.member, s.left
	}
	s.member, s.left, s.deadline = "", 0, 0
}

// Allow decides one request of tenantID.
func (r *Redis) Allow(ctx context.Context, tenantID string, rl events.RateLimit) Decision {
	if rl.Limit <= 0 || rl.WindowMs <= 0 {
		return unlimited()
	}
	if r.down.Load() {
		return r.fallback(ctx, tenantID, rl)
	}
	s := r.state(tenantID)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.limit != rl.Limit || s.windowMs != rl.WindowMs {
		// A changed limit applies at once: stop spending a lease granted
		// under the old one and forget a denial; the shared counts stay.
		s.abandon()
		s.limit, s.windowMs, s.deniedUntil = rl.Limit, rl.WindowMs, 0
	}
	now := r.now()
	if s.left > 0 {
		if now < s.deadline {
			s.left--
			d := Decision{Allowed: true, Limit: rl.Limit, Remaining: s.remaining + s.left, Reset: s.reset}
			r.m.decision(d)
			return d
		}
		s.abandon()
	}
	if now < s.deniedUntil {
		d := Decision{Limit: rl.Limit, Reset: s.reset, RetryAfter: max(s.deniedUntil-now, time.Millisecond)}
		r.m.decision(d)
		return d
	}
	if r.down.Load() {
		// Redis failed while this request waited for the tenant's lock (a
		// failover, a crash): do not wait for it once more. Without this,
		// the requests queued behind a failing call each waited Timeout in
		// turn.
		return r.fallback(ctx, tenantID, rl)
	}
	d, err := r.call(ctx, s, rl, now)
	if err != nil {
		if ctx.Err() == nil {
			r.markDown(err)
		}
		return r.fallback(ctx, tenantID, rl)
	}
	r.m.decision(d)
	return d
}

// leaseFor is the lease length and size asked for under rl.
func (r *Redis) leaseFor(rl events.RateLimit) (want int, lease time.Duration) {
	if rl.Limit < r.cfg.LeaseMinLimit {
		return 1, 0
	}
	lease = min(time.Duration(rl.WindowMs)*time.Millisecond/100, time.Second)
	return max(1, rl.Limit/100), lease
}

// call runs the script: one round trip. Called with s.mu held.
func (r *Redis) call(ctx context.Context, s *leaseState, rl events.RateLimit, sent time.Duration) (Decision, error) {
	want, lease := r.leaseFor(rl)
	id := r.cfg.InstanceID + "." + strconv.FormatUint(r.seq.Add(1), 36)
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	if r.m != nil {
		r.m.redisCalls.Inc()
	}
	relMember, relCount := s.relMember, s.relCount
	s.relMember, s.relCount = "", 0 // given back now, or lost with a failed call (then it merely expires)
	res, err := r.run(ctx, []string{announce.TenantKey(r.cfg.Prefix, "ratelimit", s.tenant)},
		rl.Limit, rl.WindowMs, want, lease.Milliseconds(), id, relMember, relCount)
	if err != nil {
		return Decision{}, fmt.Errorf("ratelimit: redis script: %w", err)
	}
	if len(res) != 4 {
		return Decision{}, fmt.Errorf("ratelimit: redis script returned %d values", len(res))
	}
	granted, remaining, resetMs, serverNow := int(res[0]), int(res[1]), res[2], res[3]
	untilReset := time.Duration(resetMs-serverNow) * time.Millisecond
	s.reset = time.Now().Add(untilReset)
	d := Decision{Limit: rl.Limit, Reset: s.reset}
	if granted == 0 {
		// Nothing frees before the oldest entry leaves (unless another
		// instance gives a lease back): deny locally until then.
		s.deniedUntil = sent + untilReset
		d.RetryAfter = max(untilReset, time.Millisecond)
		return d, nil
	}
	s.member = id + ":" + strconv.Itoa(granted)
	s.left = granted - 1
	// Measured from before the call: the grant's entry is dated lease after
	// the script ran, which is later than sent+lease.
	s.deadline = sent + lease
	s.remaining = remaining
	d.Allowed = true
	d.Remaining = remaining + s.left
	return d, nil
}

// run runs the script, giving up when ctx ends even if the client would wait
// longer (a hung Redis must not hold the tenant's requests for the client's
// ReadTimeout). A reply that comes too late is dropped: a lease it granted
// stays counted until it leaves the window, which errs on the safe side.
func (r *Redis) run(ctx context.Context, keys []string, args ...any) ([]int64, error) {
	type reply struct {
		vals []int64
		err  error
	}
	ch := make(chan reply, 1)
	go func() {
		v, err := script.Run(ctx, r.client, keys, args...).Int64Slice()
		ch <- reply{v, err}
	}()
	select {
	case rep := <-ch:
		return rep.vals, rep.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (r *Redis) state(tenantID string) *leaseState {
	if v, ok := r.tenants.Load(tenantID); ok {
		return v.(*leaseState)
	}
	v, _ := r.tenants.LoadOrStore(tenantID, &leaseState{tenant: tenantID})
	return v.(*leaseState)
}

// Forget drops a tenant's local state (the tenant was deleted). Its Redis
// key expires on its own.
func (r *Redis) Forget(tenantID string) {
	r.tenants.Delete(tenantID)
	r.local.Forget(tenantID)
}

func (r *Redis) fallback(ctx context.Context, tenantID string, rl events.RateLimit) Decision {
	if r.m != nil {
		r.m.fallbacks.Inc()
	}
	r.logStillDown()
	if r.cfg.FailClosed {
		d := Decision{Limit: rl.Limit, Reset: time.Now().Add(r.cfg.ProbeInterval), RetryAfter: r.cfg.ProbeInterval}
		r.local.m.decision(d)
		return d
	}
	return r.local.Allow(ctx, tenantID, rl)
}

// markDown switches to the fallback and starts the background probe.
func (r *Redis) markDown(err error) {
	if !r.down.CompareAndSwap(false, true) {
		return
	}
	if r.m != nil {
		r.m.redisUp.Set(0)
	}
	r.lastLog.Store(time.Now().UnixNano())
	mode := "per-instance local limits"
	if r.cfg.FailClosed {
		mode = "refusing requests (FailClosed)"
	}
	r.log.Warn("redis unavailable, rate limiting falls back", "mode", mode, "err", err)
	go r.probe()
}

// logStillDown logs at most once a minute while the outage lasts.
func (r *Redis) logStillDown() {
	last := r.lastLog.Load()
	now := time.Now().UnixNano()
	if now-last < int64(time.Minute) || !r.lastLog.CompareAndSwap(last, now) {
		return
	}
	r.log.Warn("redis still unavailable, rate limiting locally")
}

// probe pings Redis until it answers, then switches back.
func (r *Redis) probe() {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("ratelimit probe panicked", "panic", p)
			r.down.Store(false) // let the next failing call start a new probe
		}
	}()
	t := time.NewTicker(r.cfg.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-r.closed:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), max(r.cfg.Timeout, 500*time.Millisecond))
		err := r.client.Ping(ctx).Err()
		cancel()
		if err == nil {
			r.down.Store(false)
			if r.m != nil {
				r.m.redisUp.Set(1)
			}
			r.log.Info("redis reachable again, rate limits shared again")
			return
		}
	}
}

// script: KEYS[1] the tenant's set; ARGV limit, windowMs, want, leaseMs, id,
// release member, release count. Returns {granted, remaining, resetMs, nowMs}.
var script = redis.NewScript(`
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local leaseMs = tonumber(ARGV[4])
local id = ARGV[5]
local relMember = ARGV[6]
local relCount = tonumber(ARGV[7])
local t = redis.call('TIME')
-- milliseconds with a fraction: scores carry 14 significant digits (0.1ms)
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local total = 0
local n = redis.call('ZSCORE', key, 'n')
if n then total = -1 - tonumber(n) end
if relCount > 0 then
  local s = redis.call('ZSCORE', key, relMember)
  if s then
    local k = tonumber(string.match(relMember, ':(%d+)$'))
    local back = math.min(k, relCount)
    redis.call('ZREM', key, relMember)
    if k > back then
      local kept = string.gsub(relMember, ':(%d+)$', 'r:' .. (k - back))
      redis.call('ZADD', key, s, kept)
    end
    total = total - back
  end
end
local old = redis.call('ZRANGEBYSCORE', key, 0, now - window)
for _, m in ipairs(old) do
  total = total - tonumber(string.match(m, ':(%d+)$'))
end
if #old > 0 then redis.call('ZREMRANGEBYSCORE', key, 0, now - window) end
if total < 0 then total = 0 end
local avail = limit - total
local grant = 0
if avail > 0 then
  grant = want
  if avail < want * 4 then grant = math.max(1, math.floor(avail / 4)) end
  if grant > avail then grant = avail end
  redis.call('ZADD', key, now + leaseMs, id .. ':' .. grant)
  total = total + grant
end
redis.call('ZADD', key, -1 - total, 'n')
redis.call('PEXPIRE', key, window + leaseMs + 1000)
local reset = now
local oldest = redis.call('ZRANGEBYSCORE', key, 0, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
if #oldest == 2 then reset = tonumber(oldest[2]) + window end
local remaining = limit - total
if remaining < 0 then remaining = 0 end
return {grant, remaining, reset, now}
`)
