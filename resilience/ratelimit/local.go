package ratelimit

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// exactMax is the largest limit kept as an exact log of request times (8
// bytes a request at most, so 32 KiB a tenant); larger limits are counted in
// slots.
const exactMax = 4096

// slots is how many slots a window is cut into for limits over exactMax.
// Counting whole slots is conservative: a request is counted until up to one
// slot (1/128 of the window) after it left the window, so Local never admits
// more than the limit in any window and, under sustained overload, still
// admits over 99% of it.
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
func (l *Local) Allow(_ context.Context, tenantID string, rule Rule) Decision {
	if rule.unlimited() {
		return unlimited()
	}
	rl := limitMs{Limit: rule.Limit, WindowMs: rule.windowMs()}
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

// limitMs is a rule with its window in milliseconds, as windows count it.
type limitMs struct {
	Limit    int
	WindowMs int64
}

// window counts one tenant's requests: as an exact log of their times for
// limits up to exactMax, else in slots of windowMs/slots.
type window struct {
	mu       sync.Mutex
	limit    int
	windowMs int64

	exact bool
	times []time.Duration // ring of the admitted requests' times, oldest at first
	first int
	n     int

	slot   time.Duration
	counts [ring]int32
	head   int64 // newest slot seen
	tail   int64 // oldest slot that may still be counted and non-empty
	sum    int64 // requests counted in the ring
}

// allow decides at now (time since the Local's base). It returns Reset as a
// time.Unix(0, offset) so the caller can rebase it without a second clock read.
func (w *window) allow(now time.Duration, rl limitMs) Decision {
	exact := rl.Limit <= exactMax
	if w.windowMs == 0 {
		w.exact = exact // a new window
	}
	if exact != w.exact {
		w.convert(now, rl)
	}
	if exact {
		return w.allowExact(now, rl)
	}
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

// allowExact decides from the log: exact Remaining, Reset and RetryAfter.
func (w *window) allowExact(now time.Duration, rl limitMs) Decision {
	w.limit, w.windowMs = rl.Limit, rl.WindowMs // both apply at once; the log stays
	window := time.Duration(rl.WindowMs) * time.Millisecond
	for w.n > 0 && w.times[w.first] <= now-window {
		w.first = (w.first + 1) % len(w.times)
		w.n--
	}
	d := Decision{Limit: w.limit}
	if w.n < w.limit {
		w.push(now)
		d.Allowed = true
	}
	d.Remaining = max(0, w.limit-w.n)
	reset := w.times[w.first] + window
	d.Reset = time.Unix(0, int64(reset))
	if !d.Allowed {
		d.RetryAfter = max(reset-now, time.Millisecond)
	}
	return d
}

func (w *window) push(t time.Duration) {
	if w.n == len(w.times) {
		grown := make([]time.Duration, min(max(2*len(w.times), 8), max(exactMax, w.n+1)))
		for i := range w.n {
			grown[i] = w.times[(w.first+i)%len(w.times)]
		}
		w.times, w.first = grown, 0
	}
	w.times[(w.first+w.n)%len(w.times)] = t
	w.n++
}

// convert moves the counts between the log and the slots when the limit
// crosses exactMax. The requests counted are kept, dated now (which errs on
// the side of counting them longer).
func (w *window) convert(now time.Duration, rl limitMs) {
	if w.exact {
		count := int64(w.n)
		w.times, w.first, w.n = nil, 0, 0
		w.exact = false
		w.windowMs = 0 // makes allow reshape the slots
		w.sum = count
		w.reshape(now, rl.WindowMs)
		return
	}
	w.advance(int64(now / w.slot))
	count := int(min(w.sum, int64(rl.Limit)))
	w.counts, w.sum = [ring]int32{}, 0
	w.exact = true
	for range count {
		w.push(now)
	}
}
