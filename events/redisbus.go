package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisBusConfig configures a RedisBus.
type RedisBusConfig struct {
	// Stream is the stream's key, e.g. prefix+"events". Required.
	Stream string
	// MaxLen is the approximate cap of the stream (XADD MAXLEN ~). Default
	// 100000. A subscriber that falls behind the trimmed part gets a Resync.
	MaxLen int64
	// Block is how long one XREAD waits for new entries; it also bounds how
	// late a subscription notices a deleted stream or a cancelled context.
	// Default 1s.
	Block time.Duration
}

// streamField is the one field of a stream entry: the envelope as JSON.
const streamField = "event"

// Subscription retry bounds while Redis does not answer.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
	// errLogEvery rate-limits the "still failing" logs of a loop.
	errLogEvery = 30 * time.Second
)

// RedisBus is the Bus on a Redis Stream. The entry ID of an event is
// "<seq>-0", so Redis itself rejects a second publish of a seq. Subscribers
// read with plain XREAD (no consumer group): every instance gets every event.
type RedisBus struct {
	client redis.UniversalClient
	cfg    RedisBusConfig
	log    *slog.Logger
}

var _ Bus = (*RedisBus)(nil)

// NewRedisBus returns a bus on cfg.Stream. It does not own client: Close
// leaves it open.
func NewRedisBus(client redis.UniversalClient, cfg RedisBusConfig, log *slog.Logger) (*RedisBus, error) {
	if cfg.MaxLen <= 0 {
		cfg.MaxLen = 100000
	}
	if cfg.Block <= 0 {
		cfg.Block = time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch {
	case client == nil:
		return nil, errors.New("events: redis bus: nil client")
	case cfg.Stream == "":
		return nil, errors.New("events: redis bus: Stream is required")
	}
	return &RedisBus{client: client, cfg: cfg, log: log.With("component", "redis-bus", "stream", cfg.Stream)}, nil
}

// Kind returns "redis".
func (b *RedisBus) Kind() string { return "redis" }

// Close does nothing: subscriptions end with their context and the client
// belongs to the caller.
func (b *RedisBus) Close() error { return nil }

// Publish adds the events to the stream in one pipeline. Events already in
// the stream (or older than its newest entry) are skipped.
func (b *RedisBus) Publish(ctx context.Context, evs ...Envelope) error {
	if len(evs) == 0 {
		return nil
	}
	pipe := b.client.Pipeline()
	cmds := make([]*redis.StringCmd, len(evs))
	for i, ev := range evs {
		payload, err := streamPayload(ev)
		if err != nil {
			return err
		}
		cmds[i] = pipe.XAdd(ctx, &redis.XAddArgs{
			Stream: b.cfg.Stream,
			MaxLen: b.cfg.MaxLen,
			Approx: true,
			ID:     streamID(ev.Seq),
			Values: []any{streamField, payload},
		})
	}
	// Exec returns the first error; a Redis error (an XADD refused) is
	// judged per command below, anything else failed the whole pipeline.
	if _, err := pipe.Exec(ctx); err != nil {
		var redisErr redis.Error
		if !errors.As(err, &redisErr) {
			return fmt.Errorf("events: publish: %w", err)
		}
	}
	for i, cmd := range cmds {
		err := cmd.Err()
		if err == nil && cmd.Val() == "" {
			err = errors.New("no reply")
		}
		if err != nil && !alreadyPublished(err) {
			return fmt.Errorf("events: publish seq %d: %w", evs[i].Seq, err)
		}
	}
	return nil
}

// lastGeneratedSeq is the Lua that sets `last` to the seq part of the stream
// KEYS[1]'s last generated ID (0 when the stream is missing), as LastSeq reads it.
const lastGeneratedSeq = `
local last = 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then last = tonumber(string.match(info[i + 1], '^(%d+)')) end
  end
end
`

// publishAfter adds the entries (ARGV[3..]: ID, payload pairs) only if the
// stream's last seq is still ARGV[1]; otherwise it adds nothing and returns
// -1. ARGV[2] is the MAXLEN cap.
var publishAfter = redis.NewScript(lastGeneratedSeq + `
if last ~= tonumber(ARGV[1]) then return -1 end
for i = 3, #ARGV, 2 do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], ARGV[i], '` + streamField + `', ARGV[i + 1])
end
return (#ARGV - 2) / 2
`)

// PublishAfter adds the events, which follow seq after, in one step, only if
// the stream's last seq is still after. It reports false, adding nothing,
// when the stream moved since the caller read it: another relay published,
// or Redis lost the stream. Publishing on top of a lost stream would leave
// it without its older events while LastSeq said it had them all.
func (b *RedisBus) PublishAfter(ctx context.Context, after int64, evs ...Envelope) (bool, error) {
	if len(evs) == 0 {
		return true, nil
	}
	args := make([]any, 0, 2+2*len(evs))
	args = append(args, after, b.cfg.MaxLen)
	for _, ev := range evs {
		payload, err := streamPayload(ev)
		if err != nil {
			return false, err
		}
		args = append(args, streamID(ev.Seq), payload)
	}
	n, err := publishAfter.Run(ctx, b.client, []string{b.cfg.Stream}, args...).Int()
	if err != nil {
		return false, fmt.Errorf("events: publish after seq %d: %w", after, err)
	}
	return n >= 0, nil
}

// streamPayload is the stream entry's value of ev, which must have a seq.
func streamPayload(ev Envelope) ([]byte, error) {
	if ev.Seq <= 0 {
		return nil, fmt.Errorf("events: publish: event %s has no seq", ev.ID)
	}
	payload, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("events: publish seq %d: %w", ev.Seq, err)
	}
	return payload, nil
}

// alreadyPublished reports Redis's answer to an XADD whose ID is not above the
// stream's last one.
func alreadyPublished(err error) bool {
	return strings.Contains(err.Error(), "equal or smaller than the target stream top item")
}

// LastSeq returns the seq of the newest entry ever added to the stream (its
// last generated ID, which survives trimming), 0 when the stream is missing.
func (b *RedisBus) LastSeq(ctx context.Context) (int64, error) {
	info, err := b.client.XInfoStream(ctx, b.cfg.Stream).Result()
	if err != nil {
		if strings.Contains(err.Error(), "no such key") {
			return 0, nil
		}
		return 0, fmt.Errorf("events: stream last seq: %w", err)
	}
	// Only the first part counts: an entry "<n>-1" written by someone else
	// still means the next publishable seq is n+1.
	ms, _, _ := strings.Cut(info.LastGeneratedID, "-")
	seq, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("events: stream last ID %q: %w", info.LastGeneratedID, err)
	}
	return seq, nil
}

// dropAfter deletes the entries after seq ARGV[1] and sets the stream's last
// ID back to it, in one step: XADD refuses any ID not above the last one, so
// without XSETID the store's next events could never be published.
var dropAfter = redis.NewScript(lastGeneratedSeq + `
if last <= tonumber(ARGV[1]) then return 0 end
local stale = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1] .. '-0', '+')
for _, e in ipairs(stale) do redis.call('XDEL', KEYS[1], e[1]) end
redis.call('XSETID', KEYS[1], ARGV[1] .. '-0')
return #stale
`)

// DropAfter removes the stream's entries after seq and moves its last ID
// back to seq, so that seq+1 can be published again. Subscribers already
// past seq keep what they read; the projector's head check catches them.
func (b *RedisBus) DropAfter(ctx context.Context, seq int64) (int, error) {
	n, err := dropAfter.Run(ctx, b.client, []string{b.cfg.Stream}, seq).Int()
	if err != nil {
		return 0, fmt.Errorf("events: drop stream entries after seq %d: %w", seq, err)
	}
	return n, nil
}

func streamID(seq int64) string { return strconv.FormatInt(seq, 10) + "-0" }

// parseStreamID returns the seq of an ID "<seq>-0".
func parseStreamID(id string) (int64, bool) {
	ms, rest, ok := strings.Cut(id, "-")
	if !ok || rest != "0" {
		return 0, false
	}
	seq, err := strconv.ParseInt(ms, 10, 64)
	return seq, err == nil && seq >= 0
}

// Subscribe delivers the events after seq `after` until ctx ends, then closes
// the channel. It never gives up on Redis: errors are logged and retried with
// backoff. A Resync is sent when events may have been missed: a gap in the
// seqs read (stream trimmed), a malformed entry skipped, the stream deleted,
// Redis restarted, or Redis answering again after errors.
func (b *RedisBus) Subscribe(ctx context.Context, after int64) (<-chan Delivery, error) {
	if after < 0 {
		return nil, fmt.Errorf("events: subscribe after %d", after)
	}
	ch := make(chan Delivery, 256)
	s := &subscription{bus: b, ch: ch, last: after, cursor: streamID(after)}
	go s.run(ctx)
	return ch, nil
}

// subscription is one XREAD loop.
type subscription struct {
	bus    *RedisBus
	ch     chan<- Delivery
	last   int64  // highest seq delivered or skipped
	cursor string // stream ID to read after
	runID  string // Redis run_id last seen ("" before the first look)
	exists bool   // the stream existed at the last look
}

func (s *subscription) run(ctx context.Context) {
	defer close(s.ch)
	log := s.bus.log
	backoff := minBackoff
	var failingSince, lastLog time.Time
	for ctx.Err() == nil {
		res, err := s.pollSafely(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			now := time.Now()
			if failingSince.IsZero() {
				failingSince, lastLog = now, now
				log.Warn("redis unavailable, subscription retrying", "err", err)
			} else if now.Sub(lastLog) >= errLogEvery {
				lastLog = now
				log.Warn("redis still unavailable", "err", err, "since", failingSince)
			}
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		if !failingSince.IsZero() {
			// Redis may have restarted empty or been flushed meanwhile.
			log.Info("redis answers again, resyncing", "down", time.Since(failingSince).Round(time.Millisecond))
			failingSince, backoff = time.Time{}, minBackoff
			if !s.send(ctx, Delivery{Resync: true}) {
				return
			}
		}
		if !s.deliver(ctx, res) {
			return
		}
	}
}

// pollSafely is poll with a panic turned into an error (and a Resync once
// Redis answers again), so a bug cannot end the subscription early.
func (s *subscription) pollSafely(ctx context.Context) (msgs []redis.XMessage, err error) {
	defer func() {
		if p := recover(); p != nil {
			msgs, err = nil, fmt.Errorf("events: subscription panic: %v", p)
		}
	}()
	return s.poll(ctx)
}

// poll reads the next entries, or, when none came within Block, checks that
// Redis was not restarted and the stream not deleted under the subscription
// (sending a Resync if so) and returns no entries.
func (s *subscription) poll(ctx context.Context) ([]redis.XMessage, error) {
	res, err := s.bus.client.XRead(ctx, &redis.XReadArgs{
		Streams: []string{s.bus.cfg.Stream, s.cursor},
		Count:   512,
		Block:   s.bus.cfg.Block,
	}).Result()
	switch {
	case err == nil:
		s.exists = true
		if len(res) == 0 {
			return nil, nil
		}
		return res[0].Messages, nil
	case !errors.Is(err, redis.Nil):
		return nil, err
	}

	server, err := s.bus.streamServer(ctx)
	if err != nil {
		return nil, err
	}
	pipe := server.Pipeline()
	exists := pipe.Exists(ctx, s.bus.cfg.Stream)
	// run_id identifies one Redis process: asked of the server holding the
	// stream, it changes when that server restarted or another took over.
	_, oneServer := server.(*redis.Client)
	var info *redis.StringCmd
	if oneServer {
		info = pipe.Info(ctx, "server")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, err
	}
	resync := false
	if oneServer {
		runID := infoField(info.Val(), "run_id")
		if s.runID != "" && runID != s.runID {
			s.bus.log.Warn("redis restarted, resyncing", "run_id", runID)
			resync = true
		}
		s.runID = runID
	}
	if exists.Val() == 0 && s.exists {
		s.bus.log.Warn("stream deleted, resyncing")
		resync = true
	}
	s.exists = exists.Val() > 0
	if resync && !s.send(ctx, Delivery{Resync: true}) {
		return nil, ctx.Err()
	}
	return nil, nil
}

// streamServer is the client of the server holding the stream: the master
// of its slot in a Cluster (a cluster client would ask INFO of a random
// node), else the client itself (one server, or the current master behind
// Sentinel).
func (b *RedisBus) streamServer(ctx context.Context) (redis.UniversalClient, error) {
	if cc, ok := b.client.(*redis.ClusterClient); ok {
		return cc.MasterForKey(ctx, b.cfg.Stream)
	}
	return b.client, nil
}

// deliver sends msgs in order, with a Resync before a gap and in place of a
// malformed entry. It returns false once ctx ended.
func (s *subscription) deliver(ctx context.Context, msgs []redis.XMessage) bool {
	for _, msg := range msgs {
		s.cursor = msg.ID
		seq, okID := parseStreamID(msg.ID)
		ev, err := decodeEntry(msg)
		if !okID || err != nil || ev.Seq != seq {
			if err == nil {
				err = fmt.Errorf("entry ID does not match the event's seq %d", ev.Seq)
			}
			s.bus.log.Error("skipping malformed stream entry", "id", msg.ID, "err", err)
			s.last = max(s.last, seq)
			if !s.send(ctx, Delivery{Resync: true}) {
				return false
			}
			continue
		}
		if seq <= s.last {
			continue
		}
		if seq != s.last+1 && !s.send(ctx, Delivery{Resync: true}) {
			return false
		}
		if !s.send(ctx, Delivery{Event: ev}) {
			return false
		}
		s.last = seq
	}
	return true
}

func decodeEntry(msg redis.XMessage) (Envelope, error) {
	var ev Envelope
	raw, ok := msg.Values[streamField].(string)
	if !ok {
		return ev, fmt.Errorf("no %q field", streamField)
	}
	if err := json.Unmarshal([]byte(raw), &ev); err != nil {
		return ev, err
	}
	return ev, nil
}

func (s *subscription) send(ctx context.Context, d Delivery) bool {
	select {
	case s.ch <- d:
		return true
	case <-ctx.Done():
		return false
	}
}

// infoField returns a field of an INFO answer.
func infoField(info, name string) string {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
