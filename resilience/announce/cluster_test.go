package announce

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tenantgate/gateway/events/testenv"
)

func TestTenantKey(t *testing.T) {
	t.Parallel()
	if got := TenantKey("gw:", "cb", "t-1", "r-1", "ab12"); got != "gw:cb:{t-1}:r-1:ab12" {
		t.Fatalf("TenantKey = %q", got)
	}
	if got := TenantKey("", "ratelimit", "t-1"); got != "ratelimit:{t-1}" {
		t.Fatalf("TenantKey = %q", got)
	}
}

// On a real three-node Cluster: a tenant's keys share one slot, and
// ScanValues finds keys on every master (a plain SCAN walks one node).
func TestOnCluster(t *testing.T) {
	t.Parallel()
	c := testenv.StartCluster(t, 3)
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	t.Cleanup(func() { _ = client.Close() })
	ctx := context.Background()

	t.Run("a tenant's keys share a slot", func(t *testing.T) {
		keys := []string{TenantKey("gw:", "ratelimit", "t-1"), TenantKey("gw:", "cb", "t-1", "r", "h"), TenantKey("gw:", "health", "t-1", "r", "h", "lease")}
		var slots []int64
		for _, k := range keys {
			s, err := client.ClusterKeySlot(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			slots = append(slots, s)
		}
		if len(slices.Compact(slices.Clone(slots))) != 1 {
			t.Fatalf("slots %v of %v, want one", slots, keys)
		}
		// So a transaction over them is allowed (it would be CROSSSLOT otherwise).
		if _, err := client.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range keys {
				p.Set(ctx, k, "x", 0)
			}
			return nil
		}); err != nil {
			t.Fatalf("one transaction over a tenant's keys: %v", err)
		}
	})

	t.Run("ScanValues walks every master", func(t *testing.T) {
		want := map[string]bool{}
		nodes := map[string]bool{}
		for i := range 30 {
			k := TenantKey("scan:", "cb", "tenant-"+strconv.Itoa(i), "r")
			v := fmt.Sprintf("v%d", i)
			if err := client.Set(ctx, k, v, 0).Err(); err != nil {
				t.Fatal(err)
			}
			want[v] = true
			nodes[c.NodeFor(t, k).Addr] = true
		}
		if len(nodes) < 2 {
			t.Fatalf("the 30 keys landed on %d node(s): the test needs them spread", len(nodes))
		}
		got := map[string]bool{}
		if err := ScanValues(ctx, client, "scan:cb:*", func(v []byte) { got[string(v)] = true }); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("ScanValues found %d of %d values spread over %d nodes", len(got), len(want), len(nodes))
		}
	})
}
