// Package balance chooses the upstream of each proxied request: round-robin,
// smooth weighted (nginx's algorithm) or random.
//
// Configuration (a route's upstreams and policy) lives in the snapshot; the
// live counters live here, in a Registry keyed by route id, so they survive
// snapshot swaps: a change to a route that leaves its upstreams and policy
// alone keeps its rotation where it was. No lock is shared by all requests:
// round-robin is one atomic counter per route, weighted a mutex per route,
// random uses the runtime's per-thread generator.
package balance

import (
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
)

// Skip is a set of upstream indexes a pick must avoid (unhealthy, breaker
// open, already tried): bit i stands for upstream i. A route has at most 64
// upstreams (the contract's limit); indexes from 64 up are never skipped. A
// bit set rather than a callback keeps a pick free of allocations.
type Skip uint64

// Has reports whether upstream i is skipped.
func (s Skip) Has(i int) bool { return i < 64 && s&(1<<uint(i)) != 0 }

// With returns s plus upstream i.
func (s Skip) With(i int) Skip {
	if i >= 64 {
		return s
	}
	return s | 1<<uint(i)
}

// Picker chooses one of n upstreams, avoiding those in skip. Pick returns -1
// when every upstream is skipped.
type Picker interface {
	Pick(n int, skip Skip) int
}

// Policy is how a route spreads its requests over its upstreams.
type Policy int

// Policies.
const (
	RoundRobin Policy = iota // in turn
	Weighted                 // smooth weighted round-robin (nginx's)
	Random                   // uniformly at random
)

// Registry holds one Picker per route. The zero value is not usable; call
// NewRegistry.
type Registry struct {
	routes sync.Map // route id -> *entry
}

type entry struct {
	policy  Policy
	weights []int
	picker  Picker
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{} }

// Picker returns the route's picker for this policy and these upstream
// weights (one per upstream; below 1 counts as 1), reusing the existing one
// (and its position) when neither changed.
func (r *Registry) Picker(routeID string, policy Policy, weights []int) Picker {
	upstreams := weights
	if v, ok := r.routes.Load(routeID); ok {
		e := v.(*entry)
		if e.matches(policy, upstreams) {
			return e.picker
		}
	}
	e := newEntry(policy, upstreams)
	for {
		old, loaded := r.routes.LoadOrStore(routeID, e)
		if !loaded {
			return e.picker
		}
		oe := old.(*entry)
		if oe.matches(policy, upstreams) {
			return oe.picker
		}
		if r.routes.CompareAndSwap(routeID, old, e) {
			return e.picker
		}
	}
}

// Prune drops the state of every route for which live reports false (the
// route was deleted).
func (r *Registry) Prune(live func(routeID string) bool) {
	r.routes.Range(func(k, _ any) bool {
		if !live(k.(string)) {
			r.routes.Delete(k)
		}
		return true
	})
}

// Len reports how many routes hold state.
func (r *Registry) Len() int {
	n := 0
	r.routes.Range(func(_, _ any) bool { n++; return true })
	return n
}

func (e *entry) matches(policy Policy, weights []int) bool {
	if e.policy != policy || len(e.weights) != len(weights) {
		return false
	}
	if policy != Weighted {
		return true // only the count matters
	}
	for i, w := range weights {
		if e.weights[i] != max(w, 1) {
			return false
		}
	}
	return true
}

func newEntry(policy Policy, weights []int) *entry {
	w := make([]int, len(weights))
	for i, v := range weights {
		w[i] = max(v, 1)
	}
	e := &entry{policy: policy, weights: w}
	switch policy {
	case Weighted:
		e.picker = NewWeighted(slices.Clone(w))
	case Random:
		e.picker = RandomPicker{}
	default:
		e.picker = &RoundRobinPicker{}
	}
	return e
}

// RoundRobinPicker cycles through the upstreams, skipping unavailable ones.
type RoundRobinPicker struct {
	next atomic.Uint64
}

// Pick implements Picker.
func (r *RoundRobinPicker) Pick(n int, skip Skip) int {
	if n <= 0 {
		return -1
	}
	start := int((r.next.Add(1) - 1) % uint64(n))
	for k := range n {
		i := (start + k) % n
		if !skip.Has(i) {
			return i
		}
	}
	return -1
}

// WeightedPicker is nginx's smooth weighted round-robin: every pick adds each
// available upstream's weight to its current score, takes the highest and
// subtracts the total from it. Shares match the weights exactly over a cycle
// and the heavy upstream's picks are spread out instead of bunched.
type WeightedPicker struct {
	mu      sync.Mutex
	weights []int
	current []int
}

// NewWeighted returns a smooth weighted picker over these weights (each >= 1).
func NewWeighted(weights []int) *WeightedPicker {
	return &WeightedPicker{weights: weights, current: make([]int, len(weights))}
}

// Pick implements Picker. n must equal the number of weights.
func (w *WeightedPicker) Pick(n int, skip Skip) int {
	n = min(n, len(w.weights))
	w.mu.Lock()
	defer w.mu.Unlock()
	best, total := -1, 0
	for i := range n {
		if skip.Has(i) {
			continue
		}
		w.current[i] += w.weights[i]
		total += w.weights[i]
		if best < 0 || w.current[i] > w.current[best] {
			best = i
		}
	}
	if best >= 0 {
		w.current[best] -= total
	}
	return best
}

// RandomPicker picks uniformly among the available upstreams.
type RandomPicker struct{}

// Pick implements Picker.
func (RandomPicker) Pick(n int, skip Skip) int {
	if n <= 0 {
		return -1
	}
	if skip == 0 {
		return rand.IntN(n)
	}
	m := 0
	for i := range n {
		if !skip.Has(i) {
			m++
		}
	}
	if m == 0 {
		return -1
	}
	k := rand.IntN(m)
	for i := range n {
		if !skip.Has(i) {
			if k == 0 {
				return i
			}
			k--
		}
	}
	return -1
}

var (
	_ Picker = (*RoundRobinPicker)(nil)
	_ Picker = (*WeightedPicker)(nil)
	_ Picker = RandomPicker{}
)
