package projections

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"
)

// TestPmapPersistent checks pmap against a plain map through random sets and
// deletes, in edits of random length, across shard growth, and checks that
// every earlier version still reads as it did.
func TestPmapPersistent(t *testing.T) {
	t.Parallel()
	for _, editLen := range []int{1, 7, 1000} {
		t.Run(fmt.Sprintf("edits of %d", editLen), func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(uint64(editLen), 1))
			type version struct {
				p    *strMap[int]
				want map[string]int
			}
			var versions []version
			var p *strMap[int]
			want := map[string]int{}
			tok := new(token)
			edits := 0
			for i := range 20_000 {
				if i%editLen == 0 {
					// The previous edit is over: keep a sample of results.
					if edits%97 == 0 {
						versions = append(versions, version{p, maps.Clone(want)})
					}
					edits++
					tok = new(token)
				}
				k := fmt.Sprint(r.IntN(5000))
				if r.IntN(4) == 0 {
					p = p.delete(tok, k)
					delete(want, k)
				} else {
					p = p.set(tok, k, i)
					want[k] = i
				}
			}
			versions = append(versions, version{p, want})
			for i, v := range versions {
				if v.p.len() != len(v.want) {
					t.Fatalf("version %d: len %d, want %d", i, v.p.len(), len(v.want))
				}
				n := 0
				v.p.all(func(k string, got int) bool {
					n++
					if w, ok := v.want[k]; !ok || w != got {
						t.Fatalf("version %d: %s = %d, want %d (%v)", i, k, got, w, ok)
					}
					return true
				})
				for k, w := range v.want {
					if got, ok := v.p.get(k); !ok || got != w {
						t.Fatalf("version %d: get(%s) = %d, %v; want %d", i, k, got, ok, w)
					}
				}
				if n != len(v.want) {
					t.Fatalf("version %d: all visited %d", i, n)
				}
			}
			if len(p.shards) < 8 {
				t.Errorf("only %d shards for %d keys: growth not exercised", len(p.shards), p.len())
			}
		})
	}
}
