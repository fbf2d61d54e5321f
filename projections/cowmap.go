package projections

import (
	"encoding/binary"
	"hash/maphash"
	"maps"
	"slices"
)

// This file holds the persistent map the snapshot is made of. A snapshot is
// shared with concurrent readers, so an update must never change a map they
// can see; copying a whole map per event would make each update cost as much
// as the state is large. pmap splits a map into shards by a hash of the key:
// an update copies the shard slice and the one shard it touches, and shares
// every other shard with the previous snapshot.
//
// Every node carries the token of the edit that created it. An edit may
// change nodes it created in place, because no reader has seen them yet; this
// lets a batch (a replay, a catch-up) copy each node at most once instead of
// once per event. A token is never reused after its edit ends.

// token identifies one edit. It has a non-zero size so that every token has
// its own address.
type token struct{ _ byte }

// hasher picks a key's shard. The hash only places keys; nothing observable
// depends on it, so a per-process seed is fine.
type hasher[K comparable] interface{ sum(K) uint64 }

var shardSeed = maphash.MakeSeed()

type stringHasher struct{}

func (stringHasher) sum(k string) uint64 { return maphash.String(shardSeed, k) }

// digestHasher uses the first bytes of a SHA-256 digest, already uniform.
type digestHasher struct{}

func (digestHasher) sum(k [32]byte) uint64 { return binary.LittleEndian.Uint64(k[:8]) }

const (
	// shardLoad is the average shard size at which the shard count doubles:
	// small enough that copying a shard is cheap, large enough that the
	// shard slice stays short.
	shardLoad = 64
	maxShards = 1 << 16
)

// pmap is a persistent map. The nil *pmap is the empty map. Methods that
// change it return the new map; the receiver is left as it was unless tok
// created it.
type pmap[K comparable, V any, H hasher[K]] struct {
	owner  *token
	shards []*pshard[K, V] // length is a power of two
	n      int
}

type pshard[K comparable, V any] struct {
	owner *token
	m     map[K]V
}

// strMap and digestMap are the two key kinds the snapshot uses.
type (
	strMap[V any]    = pmap[string, V, stringHasher]
	digestMap[V any] = pmap[[32]byte, V, digestHasher]
)

func (p *pmap[K, V, H]) shard(k K) *pshard[K, V] {
	if len(p.shards) == 1 {
		return p.shards[0]
	}
	var h H
	return p.shards[h.sum(k)&uint64(len(p.shards)-1)]
}

func (p *pmap[K, V, H]) get(k K) (V, bool) {
	if p == nil || p.n == 0 {
		var zero V
		return zero, false
	}
	v, ok := p.shard(k).m[k]
	return v, ok
}

func (p *pmap[K, V, H]) len() int {
	if p == nil {
		return 0
	}
	return p.n
}

// all calls yield for every entry, in no particular order, until it returns false.
func (p *pmap[K, V, H]) all(yield func(K, V) bool) {
	if p == nil {
		return
	}
	for _, s := range p.shards {
		for k, v := range s.m {
			if !yield(k, v) {
				return
			}
		}
	}
}

// editable returns p if tok owns it, else a copy owned by tok that shares p's shards.
func (p *pmap[K, V, H]) editable(tok *token) *pmap[K, V, H] {
	if p != nil && p.owner == tok {
		return p
	}
	q := &pmap[K, V, H]{owner: tok}
	if p != nil {
		q.shards = slices.Clone(p.shards)
		q.n = p.n
	}
	return q
}

// editableShard returns the shard of k, copied first unless tok owns it.
func (p *pmap[K, V, H]) editableShard(tok *token, k K) *pshard[K, V] {
	i := 0
	if len(p.shards) > 1 {
		var h H
		i = int(h.sum(k) & uint64(len(p.shards)-1))
	}
	s := p.shards[i]
	if s.owner != tok {
		m := make(map[K]V, len(s.m)+1)
		maps.Copy(m, s.m)
		s = &pshard[K, V]{owner: tok, m: m}
		p.shards[i] = s
	}
	return s
}

func (p *pmap[K, V, H]) set(tok *token, k K, v V) *pmap[K, V, H] {
	q := p.editable(tok)
	if len(q.shards) == 0 {
		q.shards = []*pshard[K, V]{{owner: tok, m: make(map[K]V, 1)}}
	}
	s := q.editableShard(tok, k)
	if _, ok := s.m[k]; !ok {
		q.n++
	}
	s.m[k] = v
	if q.n > shardLoad*len(q.shards) && len(q.shards) < maxShards {
		q.grow(tok)
	}
	return q
}

func (p *pmap[K, V, H]) delete(tok *token, k K) *pmap[K, V, H] {
	if _, ok := p.get(k); !ok {
		return p
	}
	if p.n == 1 {
		return nil
	}
	q := p.editable(tok)
	delete(q.editableShard(tok, k).m, k)
	q.n--
	return q
}

// grow doubles the shard count. It costs O(n) but happens at doubling sizes
// only, so it is O(1) per insert on average.
func (p *pmap[K, V, H]) grow(tok *token) {
	n := len(p.shards) * 2
	shards := make([]*pshard[K, V], n)
	for i := range shards {
		shards[i] = &pshard[K, V]{owner: tok, m: make(map[K]V, shardLoad)}
	}
	var h H
	for _, s := range p.shards {
		for k, v := range s.m {
			shards[h.sum(k)&uint64(n-1)].m[k] = v
		}
	}
	p.shards = shards
}

// presized returns an empty map owned by tok with room for n entries, so a
// bulk load (a checkpoint) does not grow it shard count by shard count.
func presized[K comparable, V any, H hasher[K]](tok *token, n int) *pmap[K, V, H] {
	shards := 1
	for shards*shardLoad < n && shards < maxShards {
		shards *= 2
	}
	p := &pmap[K, V, H]{owner: tok, shards: make([]*pshard[K, V], shards)}
	for i := range p.shards {
		p.shards[i] = &pshard[K, V]{owner: tok, m: make(map[K]V, n/shards+1)}
	}
	return p
}
