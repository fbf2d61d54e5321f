package ratelimit

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenantgate/gateway/events"
)

// slots is how many slots a window is cut into. Counting whole slots is
// conservative: a request is counted until up to two slots (1/64 of the
// window) after it left the window, so Local never admits more than the limit
// in any window and, under sustained overload, still admits over 98% of it.
const slots = 128

// ring holds the slots that can still overlap the window: slots+1 of them.
const ring = slots + 1

// Local is an in-memory sliding-window limiter, one window per tenant. Each
// tenant's window has its own lock; tenants are found through a sync.Map, so
// no lock is shared by all requests.
type Local struct {
	tenants sync.Map // tenantID -> *window
	base    time.Time
	now     func() time.Duration // time since base; tests replace it
	m       *metrics
}

// LocalConfig configures NewLocalWith.
type LocalConfig struct {
	// Registerer receives the decision counters. Nil: no metrics.
	Registerer prometheus.Registerer
}

// NewLocal returns a Local without metrics.
func NewLocal() *Local {
	l := &Local{base: time.Now()}
	l.now = func() time.Duration { return time.Since(l.base) }
	return l
}

// NewLocalWith returns a Local that counts its decisions.
func NewLocalWith(cfg LocalConfig) (*Local, error) {
	l := NewLocal()
	m, err := newMetrics(cfg.Registerer, "local")
	if err != nil {
		return nil, err
	}
	l.m = m
	return l, nil
}

// Allow admits the request if the tenant's window has room, and counts it.
func (l *Local) Allow(_ context.Context, tenantID string, rl events.RateLimit) Decision {
	if rl.Limit <= 0 || rl.WindowMs <= 0 {
		return unlimited()
	}
	w := l.window(tenantID)
	now := l.now()
	w.mu.Lock()
	d := w.allow(now, rl)
	w.mu.Unlock()
	d.Reset = l.base.Add(time.Duration(d.Reset.UnixNano())) // allow returns Reset as an offset from base
	l.m.decision(d)
	return d
}

// Forget drops a tenant's window (the tenant was deleted).
func (l *Local) Forget(tenantID string) { l.tenants.Delete(tenantID) }

func (l *Local) window(tenantID string) *window {
	if v, ok := l.tenants.Load(tenantID); ok {
		return v.(*window)
	}
	v, _ := l.tenants.LoadOrStore(tenantID, &window{})
	return v.(*window)
}

// window counts one tenant's requests in slots of windowMs/slots.
type window struct {
	mu       sync.Mutex
	limit    int
	windowMs int64
	slot     time.Duration
	counts   [ring]int32
	head     int64 // newest slot seen
	tail     int64 // oldest slot that may still be counted and non-empty
	sum      int64 // requests counted in the ring
}

// allow decides at now (time since the Local's base). It returns Reset as a
// time.Unix(0, offset) so the caller can rebase it without a second clock read.
func (w *window) allow(now time.Duration, rl events.RateLimit) Decision {
	if rl.WindowMs != w.windowMs {
		w.reshape(now, rl.WindowMs)
	}
	w.limit = rl.Limit // a changed limit applies at once; the counts stay
	nb := int64(now / w.slot)
	w.advance(nb)
	d := Decision{Limit: w.limit}
	if w.sum < int64(w.limit) {
		w.counts[nb%ring]++
		w.sum++
		if w.tail > nb || w.sum == 1 {
			w.tail = nb
		}
		d.Allowed = true
	}
	w.skipEmpty(nb)
	d.Remaining = max(0, w.limit-int(w.sum))
	// The tail slot stops being counted once it is ring slots old.
	reset := time.Duration(w.tail+ring) * w.slot
	if w.sum == 0 {
		reset = now
	}
	d.Reset = time.Unix(0, int64(reset))
	if !d.Allowed {
		d.RetryAfter = max(reset-now, time.Millisecond)
	}
	return d
}

// advance drops the slots that left the window when time reaches slot nb.
func (w *window) advance(nb int64) {
	if nb <= w.head {
		return
	}
	if nb-w.head >= ring {
		w.counts = [ring]int32{}
		w.sum = 0
		w.tail = nb
	} else {
		for s := w.head + 1; s <= nb; s++ {
			i := s % ring
			w.sum -= int64(w.counts[i])
			w.counts[i] = 0
		}
	}
	w.head = nb
}

func (w *window) skipEmpty(nb int64) {
	if w.tail < nb-slots {
		w.tail = nb - slots
	}
	for w.tail < nb && w.counts[w.tail%ring] == 0 {
		w.tail++
	}
}

// reshape changes the window's length. The requests already counted are kept
// (moved to the current slot, which errs on the side of counting them longer).
func (w *window) reshape(now time.Duration, windowMs int64) {
	sum := w.sum
	w.windowMs = windowMs
	w.slot = max(time.Duration(windowMs)*time.Millisecond/slots, time.Microsecond)
	nb := int64(now / w.slot)
	w.counts = [ring]int32{}
	w.counts[nb%ring] = int32(min(sum, 1<<31-1))
	w.head, w.tail, w.sum = nb, nb, sum
}
