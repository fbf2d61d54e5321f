package retry

import (
	"sync"
	"time"
)

// BudgetConfig configures Budgets. Zero fields take their defaults.
type BudgetConfig struct {
	// Ratio is the share of a route's recent requests that may be retries.
	// Default 0.2.
	Ratio float64
	// MinPerSecond is the floor: this many retries per second of Window are
	// always allowed, so a quiet route can still retry. Default 3.
	MinPerSecond float64
	// Window is the sliding window over which requests and retries are
	// counted, kept in one-second buckets. Default 10s, at least 1s.
	Window time.Duration
	// Now is the clock (tests replace it). Default time.Now.
	Now func() time.Time
}

func (c BudgetConfig) withDefaults() BudgetConfig {
	if c.Ratio <= 0 {
		c.Ratio = 0.2
	}
	if c.MinPerSecond < 0 {
		c.MinPerSecond = 0
	} else if c.MinPerSecond == 0 {
		c.MinPerSecond = 3
	}
	if c.Window < time.Second {
		c.Window = 10 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Budgets keeps one retry budget per route: retries are allowed while they
// stay under Ratio of the route's requests in the last Window, or under the
// floor of MinPerSecond. During an outage every request fails, so without a
// budget each one would turn into 1+maxRetries upstream attempts.
//
// Routes are kept in a sync.Map with a lock per route: no lock is shared by
// all requests.
type Budgets struct {
	cfg     BudgetConfig
	buckets int
	floor   float64
	routes  sync.Map // routeID -> *budget
}

// NewBudgets returns empty budgets.
func NewBudgets(cfg BudgetConfig) *Budgets {
	cfg = cfg.withDefaults()
	n := int(cfg.Window / time.Second)
	return &Budgets{cfg: cfg, buckets: n, floor: cfg.MinPerSecond * float64(n)}
}

type budget struct {
	mu       sync.Mutex
	sec      int64 // the second of the newest bucket
	requests []int64
	retries  []int64
	reqSum   int64
	retSum   int64
}

func (b *Budgets) get(routeID string) *budget {
	if v, ok := b.routes.Load(routeID); ok {
		return v.(*budget)
	}
	v, _ := b.routes.LoadOrStore(routeID, &budget{
		requests: make([]int64, b.buckets),
		retries:  make([]int64, b.buckets),
	})
	return v.(*budget)
}

// advance rotates the buckets up to second now, dropping those that left the
// window. Called with mu held.
func (r *budget) advance(now int64) {
	n := int64(len(r.requests))
	if now <= r.sec {
		return
	}
	if now-r.sec >= n {
		clear(r.requests)
		clear(r.retries)
		r.reqSum, r.retSum = 0, 0
	} else {
		for s := r.sec + 1; s <= now; s++ {
			i := s % n
			r.reqSum -= r.requests[i]
			r.retSum -= r.retries[i]
			r.requests[i], r.retries[i] = 0, 0
		}
	}
	r.sec = now
}

// Request counts one request to the route (the first attempt, not retries).
func (b *Budgets) Request(routeID string) {
	r := b.get(routeID)
	now := b.cfg.Now().Unix()
	r.mu.Lock()
	r.advance(now)
	r.requests[now%int64(len(r.requests))]++
	r.reqSum++
	r.mu.Unlock()
}

// AllowRetry takes one retry from the route's budget, reporting false when
// the budget is spent.
func (b *Budgets) AllowRetry(routeID string) bool {
	r := b.get(routeID)
	now := b.cfg.Now().Unix()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.advance(now)
	allowed := max(b.floor, b.cfg.Ratio*float64(r.reqSum))
	if float64(r.retSum+1) > allowed {
		return false
	}
	r.retries[now%int64(len(r.retries))]++
	r.retSum++
	return true
}

// Forget drops a route's budget (the route was deleted).
func (b *Budgets) Forget(routeID string) { b.routes.Delete(routeID) }
