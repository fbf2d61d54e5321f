// Package instances keeps the roll of a cluster's live gateway instances,
// which GET /admin/instances answers.
//
// Every instance writes a heartbeat, what its /admin/status says of it, into
// one Redis hash: every Interval, and as soon as its readiness or applied seq
// changes (so a draining instance says ready false before it leaves). The
// list is the entries seen within Window, by the Redis clock, read in one
// round trip, with this instance's own entry taken live rather than from
// Redis. An instance that stops cleanly removes its entry; one that dies is
// dropped from the list after Window and from the hash after forgetAfter.
// Embedded (no Redis) the list is this instance alone.
package instances

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tenantgate/gateway/events"
)

// Instance is one entry of GET /admin/instances.
type Instance struct {
	InstanceID string `json:"instanceId"`
	AppliedSeq int64  `json:"appliedSeq"`
	StateHash  string `json:"stateHash"`
	// LagMs is how far behind the store's head the instance is, in time:
	// the age of the oldest committed event it has not applied, 0 when it
	// has applied them all. Measured at each heartbeat, by the wall clocks.
	LagMs      int64     `json:"lagMs"`
	Ready      bool      `json:"ready"`
	StartedAt  time.Time `json:"startedAt"`
	LastSeenAt time.Time `json:"lastSeenAt"`
}

// List is the answer of GET /admin/instances.
type List struct {
	Items []Instance `json:"items"`
	// Partial: the heartbeats could not be read (Redis unreachable), so
	// only this instance is listed.
	Partial bool `json:"partial,omitempty"`
}

// Self is what an instance says of itself at a moment.
type Self struct {
	AppliedSeq int64
	StateHash  string
	Ready      bool // serving: caught up at start and not draining
}

// Log is what measuring the lag needs of the event store; events.Store
// satisfies it.
type Log interface {
	Head(ctx context.Context) (int64, error)
	Read(ctx context.Context, q events.Query) ([]events.Envelope, error)
}

// Config configures a Registry. Zero durations take their defaults.
type Config struct {
	// InstanceID names this instance. Required.
	InstanceID string
	// StartedAt is when the instance started. Default: when New ran.
	StartedAt time.Time
	// Self reports the instance's state; it must be quick. Required.
	Self func() Self
	// Log is the store the lag is measured against. Nil: lagMs is 0.
	Log Log
	// Key is the Redis hash holding the heartbeats, e.g. <prefix>instances.
	// Required with a Redis client.
	Key string
	// Interval between two heartbeats of an unchanged instance. Default 2s.
	Interval time.Duration
	// Window: instances whose last heartbeat is older are not listed.
	// Default 10s (API.md).
	Window time.Duration
	// Timeout bounds each Redis or store call. Default 1s.
	Timeout time.Duration
}

// forgetAfter is how long a dead instance's entry stays in the hash (and
// the hash itself once every instance is gone), in Windows.
const forgetAfter = 6

// Registry writes this instance's heartbeats and lists the cluster's.
type Registry struct {
	cfg     Config
	client  redis.UniversalClient // nil when embedded
	log     *slog.Logger
	lag     lagMeter
	kick    chan struct{}
	failing atomic.Bool
	lastLog atomic.Int64 // unix nanos of the last failure logged
}

// New returns a registry; client nil means embedded (the list is this
// instance only). Call Run to send heartbeats.
func New(cfg Config, client redis.UniversalClient, log *slog.Logger) (*Registry, error) {
	if cfg.StartedAt.IsZero() {
		cfg.StartedAt = time.Now()
	}
	if cfg.Interval == 0 {
		cfg.Interval = 2 * time.Second
	}
	if cfg.Window == 0 {
		cfg.Window = 10 * time.Second
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var errs []error
	if cfg.InstanceID == "" {
		errs = append(errs, errors.New("instances: InstanceID is required"))
	}
	if cfg.Self == nil {
		errs = append(errs, errors.New("instances: Self is required"))
	}
	if client != nil && cfg.Key == "" {
		errs = append(errs, errors.New("instances: Key is required with Redis"))
	}
	if cfg.Interval < 0 || cfg.Window < 0 || cfg.Timeout < 0 {
		errs = append(errs, errors.New("instances: Interval, Window and Timeout must be positive"))
	}
	if cfg.Interval >= cfg.Window {
		errs = append(errs, fmt.Errorf("instances: Interval %v must be shorter than Window %v", cfg.Interval, cfg.Window))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Registry{cfg: cfg, client: client, log: log.With("component", "instances"), kick: make(chan struct{}, 1)}, nil
}

// Changed asks for a heartbeat now, e.g. when the instance starts draining.
// It never blocks.
func (r *Registry) Changed() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// lookEvery is how often Run looks whether the instance changed (at most).
const lookEvery = 200 * time.Millisecond

// Run sends heartbeats until ctx ends, then removes this instance's entry.
// Every lookEvery (or Interval/10, if shorter) it looks whether the instance
// changed; a change, a Changed call or Interval without one sends a
// heartbeat. Redis failures are logged (the first, then every 30 s) and do
// not end Run.
func (r *Registry) Run(ctx context.Context) error {
	look := time.NewTicker(min(r.cfg.Interval/10, lookEvery))
	defer look.Stop()
	var sent Self
	var sentAt time.Time
	kicked := true // the first heartbeat goes out at once
	for {
		if s := r.cfg.Self(); kicked || s != sent || time.Since(sentAt) >= r.cfg.Interval {
			r.beat(ctx, s)
			sent, sentAt, kicked = s, time.Now(), false
		}
		select {
		case <-ctx.Done():
			r.leave(context.WithoutCancel(ctx))
			return nil
		case <-look.C:
		case <-r.kick:
			kicked = true
		}
	}
}

// beat measures the lag and writes the heartbeat.
func (r *Registry) beat(ctx context.Context, s Self) {
	if r.cfg.Log != nil {
		lctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		r.lag.measure(lctx, r.cfg.Log, s.AppliedSeq)
		cancel()
	}
	if r.client == nil {
		return
	}
	body, err := json.Marshal(r.entry(s, time.Now()))
	if err != nil {
		r.failed("encode heartbeat", err)
		return
	}
	wctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	err = beatScript.Run(wctx, r.client, []string{r.cfg.Key}, r.cfg.InstanceID, body,
		(forgetAfter * r.cfg.Window).Milliseconds()).Err()
	if err != nil {
		if ctx.Err() == nil { // not the shutdown
			r.failed("heartbeat", err)
		}
		return
	}
	r.recovered()
}

// leave removes this instance's entry, so the list drops it at once.
func (r *Registry) leave(ctx context.Context) {
	if r.client == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	if err := r.client.HDel(ctx, r.cfg.Key, r.cfg.InstanceID).Err(); err != nil {
		r.log.Warn("could not remove this instance's heartbeat; it is listed until it is older than the window", "err", err)
	}
}

// entry is this instance at now.
func (r *Registry) entry(s Self, now time.Time) Instance {
	return Instance{
		InstanceID: r.cfg.InstanceID,
		AppliedSeq: s.AppliedSeq,
		StateHash:  s.StateHash,
		LagMs:      r.lag.at(s.AppliedSeq, now).Milliseconds(),
		Ready:      s.Ready,
		StartedAt:  r.cfg.StartedAt.UTC().Truncate(time.Millisecond),
		LastSeenAt: now.UTC().Truncate(time.Millisecond),
	}
}

// List returns the live instances sorted by id, this one included (from its
// live state): one Redis round trip, no store call. With Redis unreachable
// it lists this instance alone and says Partial.
func (r *Registry) List(ctx context.Context) List {
	self := r.entry(r.cfg.Self(), time.Now())
	if r.client == nil {
		return List{Items: []Instance{self}}
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	res, err := listScript.Run(ctx, r.client, []string{r.cfg.Key}).StringSlice()
	if err != nil || len(res) < 2 || len(res)%2 != 0 {
		if err == nil {
			err = fmt.Errorf("instances: list script returned %d values", len(res))
		}
		r.failed("list instances", err)
		return List{Items: []Instance{self}, Partial: true}
	}
	sec, _ := strconv.ParseInt(res[0], 10, 64)
	usec, _ := strconv.ParseInt(res[1], 10, 64)
	now := time.Unix(sec, usec*1000)
	items := []Instance{self}
	for i := 2; i+1 < len(res); i += 2 {
		in, ok := decodeEntry(res[i], res[i+1])
		if !ok {
			r.log.Warn("ignoring a malformed heartbeat", "instance", res[i])
			continue
		}
		if in.InstanceID != self.InstanceID && now.Sub(in.LastSeenAt) <= r.cfg.Window {
			items = append(items, in)
		}
	}
	slices.SortFunc(items, func(a, b Instance) int { return strings.Compare(a.InstanceID, b.InstanceID) })
	return List{Items: items}
}

// decodeEntry reads a hash entry: "<Redis time in ms> <instance JSON>".
func decodeEntry(id, v string) (Instance, bool) {
	ms, body, ok := strings.Cut(v, " ")
	seen, err := strconv.ParseInt(ms, 10, 64)
	var in Instance
	if !ok || err != nil || json.Unmarshal([]byte(body), &in) != nil || in.InstanceID != id {
		return Instance{}, false
	}
	in.LastSeenAt = time.UnixMilli(seen).UTC()
	return in, true
}

func (r *Registry) failed(what string, err error) {
	now := time.Now().UnixNano()
	if last := r.lastLog.Load(); r.failing.CompareAndSwap(false, true) || now-last >= int64(30*time.Second) {
		r.lastLog.Store(now)
		r.log.Warn("redis unavailable: the instance list is incomplete until it answers", "op", what, "err", err)
	}
}

func (r *Registry) recovered() {
	if r.failing.CompareAndSwap(true, false) {
		r.log.Info("heartbeats reach redis again")
	}
}

// beatScript: KEYS[1] the hash; ARGV id, instance JSON, forget-after ms.
// Stamps the entry with the Redis clock, so that "seen within the window" is
// judged on one clock whatever the instances' clocks say, and forgets
// entries silent for longer than forget-after.
var beatScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d', now) .. ' ' .. ARGV[2])
local forget = tonumber(ARGV[3])
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local seen = tonumber(string.match(all[i + 1], '^(%d+) '))
  if seen == nil or now - seen > forget then redis.call('HDEL', KEYS[1], all[i]) end
end
redis.call('PEXPIRE', KEYS[1], forget)
return now
`)

// listScript: KEYS[1] the hash. Returns the Redis time (seconds,
// microseconds) and the entries, from the server that holds them.
var listScript = redis.NewScript(`
local t = redis.call('TIME')
local out = {t[1], t[2]}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all do out[#out + 1] = all[i] end
return out
`)

// lagMeter measures how far behind the store an instance is.
type lagMeter struct {
	mu     sync.Mutex
	head   int64     // the store's head at the last look
	next   int64     // the oldest event not applied at the last look (0: none)
	nextAt time.Time // its OccurredAt
}

// measure looks at the store: its head and, when the instance is behind,
// when the oldest event it has not applied was committed. A failed look
// keeps what the last one found, so an instance cut from the store shows a
// lag that grows.
func (m *lagMeter) measure(ctx context.Context, log Log, applied int64) {
	head, err := log.Head(ctx)
	if err != nil {
		return
	}
	m.mu.Lock()
	known := m.next == applied+1
	m.head = head
	if applied >= head {
		m.next = 0
	}
	m.mu.Unlock()
	if applied >= head || known {
		return
	}
	evs, err := log.Read(ctx, events.Query{After: applied, Limit: 1})
	if err != nil || len(evs) == 0 {
		return
	}
	m.mu.Lock()
	m.next, m.nextAt = evs[0].Seq, evs[0].OccurredAt
	m.mu.Unlock()
}

// at is the lag of the instance at seq applied: the age of the oldest event
// it has not applied as the last look knew it (an upper bound once applied
// has moved past that event), 0 when caught up with the head seen last.
func (m *lagMeter) at(applied int64, now time.Time) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	if applied >= m.head || m.next == 0 {
		return 0
	}
	return max(now.Sub(m.nextAt), 0)
}
