package projections

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/tenantgate/gateway/events"
)

// The state hash is the XOR of one digest per tenant and per route, so Apply
// keeps it current by XOR-ing out the old digest of what changed and XOR-ing
// in the new one. Each digest is SHA-256 over a canonical encoding of every
// field: fixed-width numbers, length-prefixed strings, a presence byte for
// each pointer, map keys sorted. It is written by hand because it runs once
// per applied event and JSON encoding cost twice as much as the rest of a
// replay; TestDigestCoversEveryField fails when a field is added to the model
// but not here.

type digester struct {
	h   hash.Hash
	buf []byte
}

// digesters are reused: a replay computes one digest per event.
var digesters = sync.Pool{New: func() any { return &digester{h: sha256.New(), buf: make([]byte, 0, 512)} }}

func newDigester(tag string) *digester {
	d := digesters.Get().(*digester)
	d.h.Reset()
	d.buf = d.buf[:0]
	d.str(tag)
	return d
}

func (d *digester) flush() {
	if len(d.buf) > 0 {
		d.h.Write(d.buf)
		d.buf = d.buf[:0]
	}
}

// sum returns the digest and gives d back to the pool.
func (d *digester) sum() [32]byte {
	d.flush()
	var out [32]byte
	d.h.Sum(out[:0])
	digesters.Put(d)
	return out
}

func (d *digester) int(v int64) {
	d.buf = binary.BigEndian.AppendUint64(d.buf, uint64(v))
	if len(d.buf) > 448 {
		d.flush()
	}
}

func (d *digester) str(s string) {
	d.int(int64(len(s)))
	if len(s) > 256 {
		d.flush()
		d.h.Write([]byte(s))
		return
	}
	d.buf = append(d.buf, s...)
}

func (d *digester) bool(b bool) {
	if b {
		d.int(1)
	} else {
		d.int(0)
	}
}

// present writes whether a pointer is set and reports it.
func (d *digester) present(set bool) bool {
	d.bool(set)
	return set
}

func (d *digester) time(t time.Time) {
	d.int(t.Unix())
	d.int(int64(t.Nanosecond()))
}

func (d *digester) strs(ss []string) {
	d.int(int64(len(ss)))
	for _, s := range ss {
		d.str(s)
	}
}

func (d *digester) ints(vs []int) {
	d.int(int64(len(vs)))
	for _, v := range vs {
		d.int(int64(v))
	}
}

func (d *digester) strMap(m map[string]string) {
	d.int(int64(len(m)))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		d.str(k)
		d.str(m[k])
	}
}

func (d *digester) intMap(m map[string]int) {
	d.int(int64(len(m)))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		d.str(k)
		d.int(int64(m[k]))
	}
}

func tenantDigest(t *Tenant) [32]byte {
	d := newDigester("tenant")
	d.str(t.ID)
	d.str(t.Name)
	d.str(string(t.Status))
	if d.present(t.RateLimit != nil) {
		d.int(int64(t.RateLimit.Limit))
		d.int(t.RateLimit.WindowMs)
	}
	d.str(t.KeyPrefix)
	d.int(t.Version)
	d.time(t.CreatedAt)
	d.time(t.UpdatedAt)
	d.buf = append(d.buf, t.KeyHash[:]...)
	return d.sum()
}

// routeDigest covers the route's fields; PathRegexp and Rewrite are compiled
// from them.
func routeDigest(r *Route) [32]byte {
	d := newDigester("route")
	d.str(r.ID)
	d.int(r.Version)
	d.time(r.CreatedAt)
	d.time(r.UpdatedAt)
	d.str(r.TenantID)
	d.str(r.Method)
	d.str(r.Path)
	d.str(string(r.PathType))
	d.int(int64(len(r.Upstreams)))
	for _, u := range r.Upstreams {
		d.str(u.URL)
		d.int(int64(u.Weight))
	}
	d.str(r.LoadBalancing)
	if d.present(r.Resilience != nil) {
		d.resilience(r.Resilience)
	}
	if d.present(r.Transform != nil) {
		d.transform(r.Transform)
	}
	return d.sum()
}

func (d *digester) resilience(rs *events.Resilience) {
	if cb := rs.CircuitBreaker; d.present(cb != nil) {
		d.bool(cb.Enabled)
		d.int(int64(cb.FailureThreshold))
		d.int(int64(cb.SuccessThreshold))
		d.int(int64(cb.Timeout))
	}
	if rt := rs.Retry; d.present(rt != nil) {
		d.bool(rt.Enabled)
		d.int(int64(rt.MaxRetries))
		d.int(int64(rt.BaseDelayMs))
		d.int(int64(rt.MaxDelayMs))
		d.ints(rt.RetryableStatusCodes)
		d.bool(rt.RetryNonIdempotent)
	}
	if to := rs.Timeout; d.present(to != nil) {
		d.bool(to.Enabled)
		d.int(int64(to.Default))
		d.intMap(to.ByMethod)
	}
	if hc := rs.HealthCheck; d.present(hc != nil) {
		d.bool(hc.Enabled)
		d.str(hc.Endpoint)
		d.int(int64(hc.IntervalMs))
		d.int(int64(hc.TimeoutMs))
		d.int(int64(hc.HealthyThreshold))
		d.int(int64(hc.UnhealthyThreshold))
	}
	if fb := rs.Fallback; d.present(fb != nil) {
		d.bool(fb.Enabled)
		d.int(int64(fb.StatusCode))
		d.str(fb.ContentType)
		d.str(fb.Body)
	}
}

func (d *digester) transform(t *events.Transform) {
	if rq := t.Request; d.present(rq != nil) {
		if d.present(rq.Headers != nil) {
			d.headers(rq.Headers)
		}
		if p := rq.Path; d.present(p != nil) {
			d.str(p.Pattern)
			d.str(p.Replacement)
		}
	}
	if rs := t.Response; d.present(rs != nil) {
		if d.present(rs.Headers != nil) {
			d.headers(rs.Headers)
		}
	}
}

func (d *digester) headers(h *events.HeaderOps) {
	d.strMap(h.Set)
	d.strMap(h.Add)
	d.strs(h.Remove)
}

func xor(dst, d *[32]byte) {
	for i := range dst {
		dst[i] ^= d[i]
	}
}
