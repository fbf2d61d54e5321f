package breaker

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tenantgate/gateway/events/testenv"
)

// startRedisServer runs a disposable redis-server on port (0: a free one),
// killed when the test ends or when the returned func is called.
func startRedisServer(t *testing.T, port int) (addr string, kill func()) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed")
	}
	if port == 0 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port = ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
	}
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	kill = func() {
		if !killed {
			killed = true
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}
	t.Cleanup(kill)
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	testenv.WaitFor(t, "redis-server up", 5*time.Second, func() bool { return c.Ping(context.Background()).Err() == nil })
	return addr, kill
}

// Redis goes away and comes back: breakers work locally meanwhile, and the
// instances share openings again afterwards without a restart.
func TestSharedRecoversAfterRedisOutage(t *testing.T) {
	t.Parallel()
	addr, kill := startRedisServer(t, 0)
	var ins []*Shared
	for range 2 {
		c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
		t.Cleanup(func() { _ = c.Close() })
		s, err := NewShared(c, SharedConfig{}, quiet)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		testenv.WaitFor(t, "subscribed", 5*time.Second, s.listener.Subscribed)
		ins = append(ins, s)
	}
	a, b := ins[0], ins[1]
	cfg := Config{FailureThreshold: 1, SuccessThreshold: 1, OpenFor: 60_000 * time.Millisecond}

	kill()
	testenv.WaitFor(t, "subscriptions notice the outage", 5*time.Second, func() bool { return !a.listener.Subscribed() && !b.listener.Subscribed() })
	a.Report(key, cfg, false)
	if a.Allow(key, cfg) {
		t.Fatal("a allows after its failure with Redis down")
	}
	if !b.Allow(key, cfg) {
		t.Fatal("b refuses without having seen any failure or announcement")
	}

	port, _ := strconv.Atoi(addr[len("127.0.0.1:"):])
	startRedisServer(t, port)
	testenv.WaitFor(t, "resubscribed", 5*time.Second, func() bool { return a.listener.Subscribed() && b.listener.Subscribed() })
	testenv.WaitFor(t, "b learns the opening made during the outage", 2*time.Second, func() bool { return !b.Allow(key, cfg) })
	other := Key{TenantID: "t1", RouteID: "r9", Upstream: "http://127.0.0.1:9009"}
	a.Report(other, cfg, false)
	testenv.WaitFor(t, "b refuses the breaker opened after the outage", time.Second, func() bool { return !b.Allow(other, cfg) })
}
