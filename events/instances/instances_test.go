package instances

import (
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/events/testenv"
	"github.com/tenantgate/gateway/migrations"
)

// fakeSelf is an instance's state that a test moves.
type fakeSelf struct {
	mu sync.Mutex
	s  Self
}

func (f *fakeSelf) get() Self {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.s
}

func (f *fakeSelf) set(s Self) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.s = s
}

// member is one registry of a test cluster, running until stopped.
type member struct {
	*Registry
	self *fakeSelf
	stop func() // cancels Run and waits for it (idempotent)
}

func newMember(t *testing.T, client redis.UniversalClient, key, id string, cfg Config) *member {
	t.Helper()
	self := &fakeSelf{s: Self{AppliedSeq: 1, StateHash: "h1", Ready: true}}
	cfg.InstanceID, cfg.Key, cfg.Self = id, key, self.get
	r, err := New(cfg, client, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &member{Registry: r, self: self}
}

func (m *member) start(t *testing.T) *member {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	m.stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(m.stop)
	return m
}

func ids(l List) []string {
	var out []string
	for _, in := range l.Items {
		out = append(out, in.InstanceID)
	}
	return out
}

func find(l List, id string) (Instance, bool) {
	for _, in := range l.Items {
		if in.InstanceID == id {
			return in, true
		}
	}
	return Instance{}, false
}

func listed(ctx context.Context, m *member, want ...string) func() bool {
	return func() bool {
		got := ids(m.List(ctx))
		if len(got) != len(want) {
			return false
		}
		for i := range want {
			if got[i] != want[i] {
				return false
			}
		}
		return true
	}
}

func TestEveryInstanceListsTheLiveOnes(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.RedisClient(t)
	ctx := context.Background()
	started := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	cfg := Config{Interval: 50 * time.Millisecond, Window: time.Second, StartedAt: started}
	var ms []*member
	for i := range 3 {
		m := newMember(t, client, prefix+"instances", "gw-"+strconv.Itoa(i+1), cfg).start(t)
		m.self.set(Self{AppliedSeq: int64(10 + i), StateHash: "hash-" + strconv.Itoa(i), Ready: true})
		ms = append(ms, m)
	}
	for _, m := range ms {
		testenv.WaitFor(t, m.cfg.InstanceID+" lists all three", 5*time.Second, listed(ctx, m, "gw-1", "gw-2", "gw-3"))
	}
	// What gw-1 says of the others is what they say of themselves.
	testenv.WaitFor(t, "gw-1 has the others' current state", 5*time.Second, func() bool {
		l := ms[0].List(ctx)
		for i, id := range []string{"gw-1", "gw-2", "gw-3"} {
			in, _ := find(l, id)
			if in.AppliedSeq != int64(10+i) || in.StateHash != "hash-"+strconv.Itoa(i) || !in.Ready {
				return false
			}
		}
		return true
	})
	l := ms[0].List(ctx)
	if l.Partial {
		t.Fatal("partial list with Redis up")
	}
	for _, in := range l.Items {
		if !in.StartedAt.Equal(started) || time.Since(in.LastSeenAt) > 5*time.Second || in.LastSeenAt.Location() != time.UTC {
			t.Errorf("%s: startedAt %v lastSeenAt %v", in.InstanceID, in.StartedAt, in.LastSeenAt)
		}
	}
}

// A change (readiness, applied seq) is written at once, not at the next
// periodic heartbeat; a draining instance says ready false, then leaves.
func TestChangesShowBeforeTheNextHeartbeatAndLeavingRemoves(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.RedisClient(t)
	ctx := context.Background()
	cfg := Config{Interval: time.Minute, Window: 2 * time.Minute}
	a := newMember(t, client, prefix+"instances", "a", cfg).start(t)
	b := newMember(t, client, prefix+"instances", "b", cfg).start(t)
	testenv.WaitFor(t, "a lists b", 5*time.Second, listed(ctx, a, "a", "b"))

	b.self.set(Self{AppliedSeq: 7, StateHash: "h7", Ready: true})
	testenv.WaitFor(t, "b's new seq, well before a minute", 10*time.Second, func() bool {
		in, _ := find(a.List(ctx), "b")
		return in.AppliedSeq == 7 && in.StateHash == "h7"
	})
	b.self.set(Self{AppliedSeq: 7, StateHash: "h7", Ready: false}) // draining
	b.Changed()
	testenv.WaitFor(t, "b says ready false", 10*time.Second, func() bool {
		in, ok := find(a.List(ctx), "b")
		return ok && !in.Ready
	})
	b.stop()
	if got := ids(a.List(ctx)); len(got) != 1 || got[0] != "a" {
		t.Fatalf("after b stopped, a lists %v", got)
	}
}

// An instance that dies (no leave) drops out of the list after the window;
// long-silent entries leave the hash.
func TestDeadInstanceDropsOutAfterTheWindow(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.RedisClient(t)
	ctx := context.Background()
	key := prefix + "instances"
	cfg := Config{Interval: 50 * time.Millisecond, Window: 500 * time.Millisecond}
	a := newMember(t, client, key, "a", cfg).start(t)
	dead := newMember(t, client, key, "dead", cfg)
	dead.beat(ctx, dead.self.get()) // one heartbeat, then silence, as after kill -9
	if got := ids(a.List(ctx)); len(got) != 2 {
		t.Fatalf("right after its heartbeat a lists %v, want a and dead", got)
	}
	testenv.WaitFor(t, "dead drops out of the list", 10*time.Second, listed(ctx, a, "a"))
	testenv.WaitFor(t, "dead's entry is forgotten", 20*time.Second, func() bool {
		return !client.HExists(ctx, key, "dead").Val()
	})
	if !client.HExists(ctx, key, "a").Val() {
		t.Fatal("a's own entry was forgotten")
	}
}

func TestMalformedEntriesAreSkipped(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.RedisClient(t)
	ctx := context.Background()
	key := prefix + "instances"
	a := newMember(t, client, key, "a", Config{}).start(t)
	newMember(t, client, key, "b", Config{}).start(t)
	testenv.WaitFor(t, "a lists b", 5*time.Second, listed(ctx, a, "a", "b"))
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	client.HSet(ctx, key, "junk", "not a heartbeat", "wrong-id", now+` {"instanceId":"someone-else"}`, "bad-json", now+" {")
	if got := ids(a.List(ctx)); len(got) != 2 {
		t.Fatalf("a lists %v, want a and b only", got)
	}
}

func TestWithoutRedis(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("embedded lists itself", func(t *testing.T) {
		m := newMember(t, nil, "", "solo", Config{}).start(t)
		l := m.List(ctx)
		if len(l.Items) != 1 || l.Items[0].InstanceID != "solo" || l.Partial || !l.Items[0].Ready {
			t.Fatalf("list %+v", l)
		}
	})
	t.Run("unreachable redis: itself, partial", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 50 * time.Millisecond})
		t.Cleanup(func() { _ = client.Close() })
		m := newMember(t, client, "k", "cut-off", Config{Timeout: 200 * time.Millisecond}).start(t)
		l := m.List(ctx)
		if len(l.Items) != 1 || l.Items[0].InstanceID != "cut-off" || !l.Partial {
			t.Fatalf("list %+v", l)
		}
		if b, _ := json.Marshal(l); !json.Valid(b) || string(b) == "" {
			t.Fatal("list does not encode")
		}
	})
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	self := func() Self { return Self{} }
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = client.Close() })
	tests := []struct {
		name   string
		cfg    Config
		client redis.UniversalClient
	}{
		{"no id", Config{Self: self}, nil},
		{"no self", Config{InstanceID: "a"}, nil},
		{"no key with redis", Config{InstanceID: "a", Self: self}, client},
		{"interval not shorter than window", Config{InstanceID: "a", Self: self, Interval: time.Second, Window: time.Second}, nil},
	}
	for _, tt := range tests {
		if _, err := New(tt.cfg, tt.client, nil); err == nil {
			t.Errorf("%s: New succeeded", tt.name)
		}
	}
}

// lagMs is the age of the oldest event the instance has not applied, 0
// once it has them all; with the store unreachable it keeps growing.
func TestLagIsTheAgeOfTheOldestEventNotApplied(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, err := events.OpenSQLite(ctx, filepath.Join(t.TempDir(), "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := migrations.Migrate(ctx, store.DB()); err != nil {
		t.Fatal(err)
	}
	committed := []time.Time{time.Now().Add(-time.Hour), time.Now().Add(-90 * time.Second), time.Now().Add(-30 * time.Second)}
	for i, at := range committed {
		data, _ := json.Marshal(events.TenantCreatedData{Name: "t" + strconv.Itoa(i), Status: events.TenantActive})
		if _, err := store.Append(ctx, events.AppendRequest{ExpectedHead: events.AnyHead, Events: []events.Envelope{{
			ID: uuid.NewString(), Type: events.TenantCreated, AggregateType: events.AggregateTenant, AggregateID: uuid.NewString(),
			AggregateVersion: 1, Actor: "test", OccurredAt: at, Data: data,
		}}}); err != nil {
			t.Fatal(err)
		}
	}
	m := newMember(t, nil, "", "lagging", Config{Log: store})
	lagAt := func(applied int64) time.Duration {
		m.self.set(Self{AppliedSeq: applied})
		m.beat(ctx, m.self.get())
		return time.Duration(m.List(ctx).Items[0].LagMs) * time.Millisecond
	}
	tests := []struct {
		name    string
		applied int64
		min     time.Duration
		max     time.Duration
	}{
		{"nothing applied: the first event's age", 0, time.Hour, time.Hour + time.Minute},
		{"one applied: the second's age", 1, 90 * time.Second, 150 * time.Second},
		{"two applied: the third's age", 2, 30 * time.Second, 90 * time.Second},
		{"caught up", 3, 0, 0},
	}
	for _, tt := range tests {
		if lag := lagAt(tt.applied); lag < tt.min || lag > tt.max {
			t.Errorf("%s: lagMs %v, want %v..%v", tt.name, lag, tt.min, tt.max)
		}
	}
	lagAt(1)
	_ = store.Close()
	if lag := lagAt(1); lag < 90*time.Second {
		t.Errorf("store gone: lagMs %v, want the last known lag (at least 90s) kept", lag)
	}
}
