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

	"github.com/tenantgate/gateway/resilience/announce"
)

// RedisConfig configures NewRedis. Zero fields take their defaults.
type RedisConfig struct {
	// Prefix is put before every key: <Prefix>ratelimit:{<tenantId>} (the
	// braces are a Cluster hash tag, shared by the tenant's other keys).
	// Default "".
	Prefix string
	// Timeout bounds how long a request waits for Redis. Default 100ms. The
	// client must have ContextTimeoutEnabled (go-redis honours context
	// deadlines on the socket only then).
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
// entries that left the window, gives back the unspent part of one of the
// caller's earlier leases, and grants up to `want` requests if the total
// allows.
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
// Ahead of need: once half of a lease is spent, the next one is fetched in
// the background, so under steady traffic no request waits for Redis. A
// request waits only when its tenant has no grant at all (the first request,
// a lease that ran out of time unspent, a limit below LeaseMinLimit), and
// then for one call per tenant at a time: the others wait for that call's
// grant rather than each asking. Every call runs on one of a few refiller
// goroutines per limiter, fed through a channel: no lock is held across a
// Redis call, no goroutine is started per call, and a request waits at most
// Timeout (a call that takes longer marks Redis down), whatever the client
// does; the client should still honour context deadlines
// (ContextTimeoutEnabled), so that a hung call frees its refiller.
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

	refills       chan refillJob // tenants whose next lease is wanted ahead of need
	startRefiller sync.Once

	down    atomic.Bool
	closed  chan struct{}
	closing sync.Once
	lastLog atomic.Int64 // unix nanos of the last "still down" log
}

// refillers is how many goroutines of a limiter fetch leases ahead of need.
const refillers = 4

// NewRedis returns a shared limiter using client, which must honour context
// deadlines (go-redis's ContextTimeoutEnabled): a request never waits longer
// than Timeout for Redis, and no goroutine per call enforces it.
func NewRedis(client redis.UniversalClient, cfg RedisConfig, log *slog.Logger) (*Redis, error) {
	cfg.defaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if client == nil {
		return nil, errors.New("ratelimit: nil Redis client")
	}
	if !honoursDeadlines(client) {
		return nil, errors.New("ratelimit: the Redis client must honour context deadlines (set ContextTimeoutEnabled)")
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
		base: time.Now(), refills: make(chan refillJob, 1024), closed: make(chan struct{})}
	r.now = func() time.Duration { return time.Since(r.base) }
	if m != nil {
		m.redisUp.Set(1)
	}
	return r, nil
}

// honoursDeadlines reports whether c's options make it give up at a
// context's deadline (the client kinds go-redis builds from options).
func honoursDeadlines(c redis.UniversalClient) bool {
	switch c := c.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled
	}
	return true // another implementation: its own business
}

// Close stops the background probe and the refillers. The client stays open.
func (r *Redis) Close() error {
	r.closing.Do(func() { close(r.closed) })
	return nil
}

// Up reports whether the limiter currently uses Redis.
func (r *Redis) Up() bool { return !r.down.Load() }

// leaseState is one tenant's local share of the quota on this instance. mu
// guards it and is never held across a Redis call.
type leaseState struct {
	mu     sync.Mutex
	tenant string
	rule   Rule

	cur  lease   // being spent
	next lease   // fetched ahead of need, spent once cur is
	rel  []lease // abandoned leases to give back with the next call (at most maxReleases)

	// asking is the Redis call in flight for this tenant's next lease (nil:
	// none); it is closed when the call returns.
	asking chan struct{}

	remaining   int           // the server's remaining after the last grant
	reset       time.Time     // the server's reset, as local wall time
	deniedUntil time.Duration // a denial is remembered until then
}

// lease is part of the quota granted to this instance: an entry of the
// shared log, left requests of which are still to spend before deadline.
type lease struct {
	member   string
	left     int
	deadline time.Duration // time since base
}

// maxReleases bounds the leases one call gives back: a tenant holds at
// most two (the one being spent and the next).
const maxReleases = 2

// abandon stops spending l; its unspent part goes back to Redis with the
// next call (beyond maxReleases waiting, l's entry expires by itself).
func (s *leaseState) abandon(l *lease) {
	if l.left > 0 && l.member != "" && len(s.rel) < maxReleases {
		s.rel = append(s.rel, *l)
	}
	*l = lease{}
}

// takeReleases hands the leases to give back to a call.
func (s *leaseState) takeReleases() []lease {
	rel := s.rel
	s.rel = nil
	return rel
}

// setRule starts counting under rule: a changed limit applies at once,
// leases granted under the old one are given back and a denial forgotten;
// the shared counts stay.
func (s *leaseState) setRule(rule Rule) {
	if s.rule != rule {
		s.abandon(&s.cur)
		s.abandon(&s.next)
		s.rule, s.deniedUntil = rule, 0
	}
}

// spend admits one request from the leases, if they hold one still valid
// at now.
func (s *leaseState) spend(now time.Duration) (Decision, bool) {
	if s.cur.left > 0 && now >= s.cur.deadline {
		s.abandon(&s.cur)
	}
	if s.cur.left == 0 && s.next.left > 0 {
		if now < s.next.deadline {
			s.cur, s.next = s.next, lease{}
		} else {
			s.abandon(&s.next)
		}
	}
	if s.cur.left == 0 {
		return Decision{}, false
	}
	s.cur.left--
	return Decision{Allowed: true, Limit: s.rule.Limit, Remaining: s.remaining + s.cur.left + s.next.left, Reset: s.reset}, true
}

// doneAsking ends the call that asking announced and wakes its waiters.
func (s *leaseState) doneAsking(asking chan struct{}) {
	if s.asking == asking {
		s.asking = nil
	}
	close(asking)
}

// denied is the decision while a remembered denial lasts.
func (s *leaseState) denied(now time.Duration) Decision {
	return Decision{Limit: s.rule.Limit, Reset: s.reset, RetryAfter: max(s.deniedUntil-now, time.Millisecond)}
}

// Allow decides one request of tenantID.
func (r *Redis) Allow(ctx context.Context, tenantID string, rule Rule) Decision {
	if rule.unlimited() {
		return unlimited()
	}
	if r.down.Load() {
		return r.fallback(ctx, tenantID, rule)
	}
	s := r.state(tenantID)
	want, _ := r.leaseFor(rule)
	s.mu.Lock()
	s.setRule(rule)
	for {
		now := r.now()
		if d, ok := s.spend(now); ok {
			if want > 1 && s.cur.left <= want/2 && s.next.left == 0 && s.asking == nil && now >= s.deniedUntil {
				r.fetch(s) // ahead of need
			}
			s.mu.Unlock()
			r.m.decision(d)
			return d
		}
		if now < s.deniedUntil {
			d := s.denied(now)
			s.mu.Unlock()
			r.m.decision(d)
			return d
		}
		// No grant at hand: wait for the call in flight for this tenant,
		// or start one. A request waits for Redis only here, and at most
		// Timeout whatever the client does.
		if s.asking == nil && !r.fetch(s) {
			s.mu.Unlock()
			return r.fallback(ctx, tenantID, rule) // every refiller is busy
		}
		asking := s.asking
		s.mu.Unlock()
		r.m.waited()
		if !r.wait(ctx, asking) || r.down.Load() {
			// Redis failed, or hangs, while this request waited (a failover,
			// a crash): decide locally rather than ask it once more.
			return r.fallback(ctx, tenantID, rule)
		}
		s.mu.Lock()
	}
}

// wait waits for the call asking announces, at most Timeout: a call that
// takes longer marks Redis down. It reports whether the call returned.
func (r *Redis) wait(ctx context.Context, asking <-chan struct{}) bool {
	t := time.NewTimer(r.cfg.Timeout)
	defer t.Stop()
	select {
	case <-asking:
		return true
	case <-t.C:
		r.markDown(errSlowRedis)
		return false
	case <-ctx.Done():
		return false
	}
}

var errSlowRedis = errors.New("ratelimit: redis did not answer within Timeout")

// fetch hands s to a refiller to fetch its next grant: a lease (or, below
// LeaseMinLimit, one request). Called with s.mu held; false when every
// refiller is busy. Every Redis call of the limiter runs on a refiller, so
// that no request waits for one longer than Timeout, even with a client
// that does not give up by itself.
func (r *Redis) fetch(s *leaseState) bool {
	r.startRefiller.Do(func() {
		for range refillers {
			go r.refill()
		}
	})
	job := refillJob{s: s, asking: make(chan struct{})}
	s.asking = job.asking
	select {
	case r.refills <- job:
		return true
	default:
		s.doneAsking(job.asking)
		return false
	}
}

// refill fetches the grant of each tenant it is handed, until Close.
func (r *Redis) refill() {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("ratelimit refiller panicked", "panic", p)
		}
	}()
	for {
		select {
		case <-r.closed:
			return
		case job := <-r.refills:
			r.fetchGrant(job)
		}
	}
}

// refillJob is a tenant whose next grant is wanted, and the channel its
// requests wait on meanwhile.
type refillJob struct {
	s      *leaseState
	asking chan struct{}
}

// fetchGrant runs one call for job's tenant and files the grant as the
// lease being spent, or as the next when one is still being spent.
func (r *Redis) fetchGrant(job refillJob) {
	s := job.s
	s.mu.Lock()
	rule, rel, sent := s.rule, s.takeReleases(), r.now()
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Timeout)
	g, err := r.call(ctx, s.tenant, rule, rel, sent)
	cancel()

	s.mu.Lock()
	if err == nil && s.rule == rule { // a grant under a rule changed meanwhile is dropped: it expires
		into := &s.next
		if s.cur.left == 0 || r.now() >= s.cur.deadline {
			s.abandon(&s.cur)
			into = &s.cur
		}
		r.install(s, g, into, sent)
	}
	s.doneAsking(job.asking)
	s.mu.Unlock()
	if err != nil {
		r.markDown(err)
	}
}

// grant is what one script call returned.
type grant struct {
	member     string
	granted    int
	remaining  int
	untilReset time.Duration
	lease      time.Duration
}

// install records g in s, the granted requests as lease into, and a denial
// (nothing granted) until the oldest entry leaves the window. sent is when
// the call was sent. Called with s.mu held.
func (r *Redis) install(s *leaseState, g grant, into *lease, sent time.Duration) {
	s.reset = time.Now().Add(g.untilReset)
	s.remaining = g.remaining
	if g.granted == 0 {
		// Nothing frees before the oldest entry leaves (unless another
		// instance gives a lease back): deny locally until then.
		s.deniedUntil = sent + g.untilReset
		return
	}
	s.abandon(into)
	// Measured from before the call: the grant's entry is dated lease after
	// the script ran, which is later than sent+lease.
	*into = lease{member: g.member, left: g.granted, deadline: sent + g.lease}
	if g.lease == 0 {
		into.deadline = sent + time.Hour // a grant of this one request: spent at once
	}
}

// leaseFor is the lease length and size asked for under rule.
func (r *Redis) leaseFor(rule Rule) (want int, lease time.Duration) {
	if rule.Limit < r.cfg.LeaseMinLimit {
		return 1, 0
	}
	lease = min(rule.Window/100, time.Second)
	return max(1, rule.Limit/100), lease
}

// call runs the script: one round trip, giving rel back.
func (r *Redis) call(ctx context.Context, tenant string, rule Rule, rel []lease, sent time.Duration) (grant, error) {
	want, leaseLen := r.leaseFor(rule)
	id := r.cfg.InstanceID + "." + strconv.FormatUint(r.seq.Add(1), 36)
	if r.m != nil {
		r.m.redisCalls.Inc()
	}
	args := make([]any, 0, 5+2*maxReleases)
	args = append(args, rule.Limit, rule.windowMs(), want, leaseLen.Milliseconds(), id)
	for _, l := range rel {
		args = append(args, l.member, l.left)
	}
	res, err := script.Run(ctx, r.client, []string{announce.TenantKey(r.cfg.Prefix, "ratelimit", tenant)}, args...).Int64Slice()
	if err == nil && len(res) != 4 {
		err = fmt.Errorf("returned %d values", len(res))
	}
	if err != nil {
		// A lease given back with a failed call merely expires.
		return grant{}, fmt.Errorf("ratelimit: redis script: %w", err)
	}
	granted := int(res[0])
	return grant{
		member: id + ":" + strconv.Itoa(granted), granted: granted, remaining: int(res[1]),
		untilReset: time.Duration(res[2]-res[3]) * time.Millisecond, lease: leaseLen,
	}, nil
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

func (r *Redis) fallback(ctx context.Context, tenantID string, rl Rule) Decision {
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
// then pairs of a lease to give back and its unspent count. Returns
// {granted, remaining, resetMs, nowMs}.
var script = redis.NewScript(`
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local leaseMs = tonumber(ARGV[4])
local id = ARGV[5]
local t = redis.call('TIME')
-- milliseconds with a fraction: scores carry 14 significant digits (0.1ms)
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local total = 0
local n = redis.call('ZSCORE', key, 'n')
if n then total = -1 - tonumber(n) end
for i = 6, #ARGV - 1, 2 do
  local relMember = ARGV[i]
  local relCount = tonumber(ARGV[i + 1])
  local s = redis.call('ZSCORE', key, relMember)
  if s and relCount > 0 then
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
