package announce

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenantgate/gateway/events/testenv"
)

func TestListenerReloadsThenAppliesAnnouncements(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.RedisClient(t)
	got := make(chan string, 4)
	var reloads atomic.Int32
	l := &Listener{
		Client: client, Channel: prefix + "events",
		OnSubscribed: func(context.Context) error { reloads.Add(1); return nil },
		OnMessage:    func(p string) { got <- p },
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	testenv.WaitFor(t, "subscribed", 5*time.Second, l.Subscribed)
	if reloads.Load() != 1 {
		t.Fatalf("OnSubscribed ran %d times before the first message, want 1", reloads.Load())
	}
	if err := client.Publish(ctx, prefix+"events", "opened").Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if p != "opened" {
			t.Fatalf("payload %q", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("announcement never applied")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if l.Subscribed() {
		t.Fatal("still reported subscribed after Run returned")
	}
}

func TestListenerRetriesWhenTheReloadFails(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.RedisClient(t)
	var attempts atomic.Int32
	var reported atomic.Int32
	l := &Listener{
		Client: client, Channel: prefix + "events",
		OnSubscribed: func(context.Context) error {
			if attempts.Add(1) == 1 {
				return errors.New("reload failed")
			}
			return nil
		},
		OnMessage: func(string) {},
		OnError:   func(error) { reported.Add(1) },
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = l.Run(ctx) }()
	testenv.WaitFor(t, "subscribed after a failed reload", 5*time.Second, l.Subscribed)
	if attempts.Load() != 2 || reported.Load() != 1 {
		t.Fatalf("attempts %d, errors reported %d; want 2 and 1", attempts.Load(), reported.Load())
	}
}

func TestLogThrottleLetsOneLinePerPeriod(t *testing.T) {
	t.Parallel()
	var th LogThrottle
	if !th.Allow(time.Hour) {
		t.Fatal("the first line must pass")
	}
	if th.Allow(time.Hour) {
		t.Fatal("a second line within the period passed")
	}
	if !th.Allow(0) {
		t.Fatal("a line after the period was held back")
	}
}

func TestURLHashAndInstanceID(t *testing.T) {
	t.Parallel()
	if h := URLHash("http://a:1/x"); len(h) != 16 || h != URLHash("http://a:1/x") || h == URLHash("http://a:1/y") {
		t.Fatalf("URLHash = %q: want 16 hex characters, stable, distinct per URL", h)
	}
	if a, b := NewInstanceID(), NewInstanceID(); len(a) != 12 || a == b {
		t.Fatalf("NewInstanceID gave %q and %q", a, b)
	}
}
