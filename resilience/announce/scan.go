package announce

import (
	"context"
	"errors"
	"sync"

	"github.com/redis/go-redis/v9"
)

// ScanValues calls fn with the value of every string key matching pattern.
// SCAN walks one server, so on a Cluster it walks every master; the values
// of each page of keys are fetched in one round trip. fn is never called
// concurrently. Keys that vanish meanwhile are skipped.
func ScanValues(ctx context.Context, client redis.UniversalClient, pattern string, fn func(value []byte)) error {
	var mu sync.Mutex
	walk := func(ctx context.Context, node redis.UniversalClient) error {
		var cursor uint64
		for {
			keys, next, err := node.Scan(ctx, cursor, pattern, 500).Result()
			if err != nil {
				return err
			}
			if len(keys) > 0 {
				pipe := node.Pipeline()
				gets := make([]*redis.StringCmd, len(keys))
				for i, k := range keys {
					gets[i] = pipe.Get(ctx, k)
				}
				_, _ = pipe.Exec(ctx) // judged per command: a missing key is no error
				values := make([][]byte, 0, len(gets))
				for _, g := range gets {
					v, err := g.Bytes()
					switch {
					case err == nil:
						values = append(values, v)
					case !errors.Is(err, redis.Nil):
						return err
					}
				}
				mu.Lock()
				for _, v := range values {
					fn(v)
				}
				mu.Unlock()
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	if cc, ok := client.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return walk(ctx, m) })
	}
	return walk(ctx, client)
}
