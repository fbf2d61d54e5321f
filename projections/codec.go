package projections

import (
	"encoding/binary"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/tenantgate/gateway/events"
)

// The canonical encoding of a tenant and a route: fixed-width big-endian
// numbers, length-prefixed strings, a presence flag before each pointer, map
// keys sorted, and -1 as the length of a nil slice whose JSON is null rather
// than absent. It covers every field, so it serves twice: its SHA-256 is the
// aggregate's digest in the state hash (hash.go), and it is how checkpoints
// store the aggregate (checkpoint.go), decoded by the decoder below.
// TestDigestCoversEveryField fails when a field is added to the model but not
// here, and TestCodecRoundTrip when the decoder does not read it back.

type encoder struct{ b []byte }

func (e *encoder) int(v int64) { e.b = binary.BigEndian.AppendUint64(e.b, uint64(v)) }

func (e *encoder) str(s string) {
	e.int(int64(len(s)))
	e.b = append(e.b, s...)
}

func (e *encoder) bool(b bool) {
	if b {
		e.int(1)
	} else {
		e.int(0)
	}
}

// present writes whether a pointer is set and reports it.
func (e *encoder) present(set bool) bool {
	e.bool(set)
	return set
}

func (e *encoder) time(t time.Time) {
	e.int(t.Unix())
	e.int(int64(t.Nanosecond()))
}

// length writes a slice's length, -1 when nil.
func (e *encoder) length(n int, isNil bool) {
	if isNil {
		e.int(-1)
		return
	}
	e.int(int64(n))
}

func (e *encoder) strs(ss []string) {
	e.int(int64(len(ss)))
	for _, s := range ss {
		e.str(s)
	}
}

func (e *encoder) ints(vs []int) {
	e.length(len(vs), vs == nil)
	for _, v := range vs {
		e.int(int64(v))
	}
}

func (e *encoder) strMap(m map[string]string) {
	e.int(int64(len(m)))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		e.str(k)
		e.str(m[k])
	}
}

func (e *encoder) intMap(m map[string]int) {
	e.int(int64(len(m)))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		e.str(k)
		e.int(int64(m[k]))
	}
}

// tenantParts are the offsets, in an encoded tenant, of its configuration
// (what the declarative document holds: id, name, status, rate limit).
type encodedParts struct{ configStart, configEnd int }

func (e *encoder) tenant(t *Tenant) encodedParts {
	e.str("tenant")
	p := encodedParts{configStart: len(e.b)}
	e.str(t.ID)
	e.str(t.Name)
	e.str(string(t.Status))
	if e.present(t.RateLimit != nil) {
		e.int(int64(t.RateLimit.Limit))
		e.int(t.RateLimit.WindowMs)
	}
	p.configEnd = len(e.b)
	e.str(t.KeyPrefix)
	e.int(t.Version)
	e.time(t.CreatedAt)
	e.time(t.UpdatedAt)
	e.b = append(e.b, t.KeyHash[:]...)
	return p
}

// route encodes r's fields; PathRegexp and Rewrite are compiled from them.
// Its configuration (id and spec) is the id and everything after the
// timestamps; configStart..configEnd is the id.
func (e *encoder) route(r *Route) (id encodedParts, specStart int) {
	e.str("route")
	id.configStart = len(e.b)
	e.str(r.ID)
	id.configEnd = len(e.b)
	e.int(r.Version)
	e.time(r.CreatedAt)
	e.time(r.UpdatedAt)
	specStart = len(e.b)
	e.str(r.TenantID)
	e.str(r.Method)
	e.str(r.Path)
	e.str(string(r.PathType))
	e.length(len(r.Upstreams), r.Upstreams == nil)
	for _, u := range r.Upstreams {
		e.str(u.URL)
		e.int(int64(u.Weight))
	}
	e.str(r.LoadBalancing)
	if e.present(r.Resilience != nil) {
		e.resilience(r.Resilience)
	}
	if e.present(r.Transform != nil) {
		e.transform(r.Transform)
	}
	return id, specStart
}

func (e *encoder) resilience(rs *events.Resilience) {
	if cb := rs.CircuitBreaker; e.present(cb != nil) {
		e.bool(cb.Enabled)
		e.int(int64(cb.FailureThreshold))
		e.int(int64(cb.SuccessThreshold))
		e.int(int64(cb.Timeout))
	}
	if rt := rs.Retry; e.present(rt != nil) {
		e.bool(rt.Enabled)
		e.int(int64(rt.MaxRetries))
		e.int(int64(rt.BaseDelayMs))
		e.int(int64(rt.MaxDelayMs))
		e.ints(rt.RetryableStatusCodes)
		e.bool(rt.RetryNonIdempotent)
	}
	if to := rs.Timeout; e.present(to != nil) {
		e.bool(to.Enabled)
		e.int(int64(to.Default))
		e.intMap(to.ByMethod)
	}
	if hc := rs.HealthCheck; e.present(hc != nil) {
		e.bool(hc.Enabled)
		e.str(hc.Endpoint)
		e.int(int64(hc.IntervalMs))
		e.int(int64(hc.TimeoutMs))
		e.int(int64(hc.HealthyThreshold))
		e.int(int64(hc.UnhealthyThreshold))
	}
	if fb := rs.Fallback; e.present(fb != nil) {
		e.bool(fb.Enabled)
		e.int(int64(fb.StatusCode))
		e.str(fb.ContentType)
		e.str(fb.Body)
	}
}

func (e *encoder) transform(t *events.Transform) {
	if rq := t.Request; e.present(rq != nil) {
		if e.present(rq.Headers != nil) {
			e.headers(rq.Headers)
		}
		if p := rq.Path; e.present(p != nil) {
			e.str(p.Pattern)
			e.str(p.Replacement)
		}
	}
	if rs := t.Response; e.present(rs != nil) {
		if e.present(rs.Headers != nil) {
			e.headers(rs.Headers)
		}
	}
}

func (e *encoder) headers(h *events.HeaderOps) {
	e.strMap(h.Set)
	e.strMap(h.Add)
	e.strs(h.Remove)
}

// errMalformed: encoded bytes that the encoder cannot have written.
var errMalformed = errors.New("projections: malformed encoding")

// decoder reads what encoder wrote. The first problem sticks in err and
// every later read returns zero values, so callers check err once.
type decoder struct {
	b   []byte
	err error
}

// read is how many bytes of rec, the start of what d reads, d has read.
func (d *decoder) read(rec []byte) int { return len(rec) - len(d.b) }

// enumValues are the values of the enumerated fields: methods, path types,
// balancing policies, tenant statuses.
var enumValues = [...]string{
	"GET", "POST", "PUT", "PATCH", "DELETE", events.AnyMethod,
	string(events.PathExact), string(events.PathPrefix), string(events.PathRegex),
	events.BalanceRoundRobin, events.BalanceWeighted, events.BalanceRandom,
	string(events.TenantActive), string(events.TenantSuspended),
}

// enum is str for a field of a few known values (see enumValues): those
// are returned without an allocation.
func (d *decoder) enum() string {
	b := d.bytes(d.int())
	for _, v := range enumValues {
		if string(b) == v { // compares without converting
			return v
		}
	}
	return string(b)
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errMalformed
	}
	d.b = nil
}

func (d *decoder) int() int64 {
	if len(d.b) < 8 {
		d.fail()
		return 0
	}
	v := int64(binary.BigEndian.Uint64(d.b))
	d.b = d.b[8:]
	return v
}

func (d *decoder) num() int { return int(d.int()) }

func (d *decoder) bytes(n int64) []byte {
	if n < 0 || n > int64(len(d.b)) {
		d.fail()
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string { return string(d.bytes(d.int())) }

func (d *decoder) bool() bool {
	switch d.int() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail()
	return false
}

func (d *decoder) time() time.Time {
	sec, nsec := d.int(), d.int()
	if nsec < 0 || nsec >= 1e9 {
		d.fail()
		return time.Time{}
	}
	return time.Unix(sec, nsec).UTC()
}

// length reads a count of items of at least minSize bytes each; -1 (nil)
// only where nilable. A count the remaining bytes cannot hold is malformed,
// so a corrupt length never makes a huge allocation.
func (d *decoder) length(minSize int, nilable bool) (n int, isNil bool) {
	v := d.int()
	switch {
	case v == -1 && nilable:
		return 0, true
	case v < 0 || v > int64(len(d.b)/minSize):
		d.fail()
		return 0, false
	}
	return int(v), false
}

func (d *decoder) tag(want string) {
	if d.str() != want {
		d.fail()
	}
}

func (d *decoder) strs() []string {
	n, _ := d.length(8, false)
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = d.str()
	}
	return out
}

func (d *decoder) ints() []int {
	n, isNil := d.length(8, true)
	if isNil {
		return nil
	}
	out := make([]int, n)
	for i := range out {
		out[i] = d.num()
	}
	return out
}

func (d *decoder) strMap() map[string]string {
	n, _ := d.length(16, false)
	if n == 0 {
		return nil
	}
	m := make(map[string]string, n)
	for range n {
		k := d.str()
		m[k] = d.str()
	}
	return m
}

func (d *decoder) intMap() map[string]int {
	n, _ := d.length(16, false)
	if n == 0 {
		return nil
	}
	m := make(map[string]int, n)
	for range n {
		k := d.str()
		m[k] = d.num()
	}
	return m
}

// tenant reads what encoder.tenant wrote, and where its parts are in the
// record (as encoder.tenant reports them).
func (d *decoder) tenant() (*Tenant, encodedParts) {
	rec := d.b
	d.tag("tenant")
	p := encodedParts{configStart: d.read(rec)}
	t := &Tenant{ID: d.str(), Name: d.str(), Status: events.TenantStatus(d.enum())}
	if d.bool() {
		t.RateLimit = &events.RateLimit{Limit: d.num(), WindowMs: d.int()}
	}
	p.configEnd = d.read(rec)
	t.KeyPrefix = d.str()
	t.Version = d.int()
	t.CreatedAt = d.time()
	t.UpdatedAt = d.time()
	copy(t.KeyHash[:], d.bytes(int64(len(t.KeyHash))))
	return t, p
}

// route reads what encoder.route wrote, and where its parts are in the
// record (as encoder.route reports them).
func (d *decoder) route() (r *Route, id encodedParts, specStart int) {
	rec := d.b
	d.tag("route")
	id.configStart = d.read(rec)
	r = &Route{ID: d.str()}
	id.configEnd = d.read(rec)
	r.Version, r.CreatedAt, r.UpdatedAt = d.int(), d.time(), d.time()
	specStart = d.read(rec)
	r.TenantID = d.str()
	r.Method = d.enum()
	r.Path = d.str()
	r.PathType = events.PathType(d.enum())
	if n, isNil := d.length(16, true); !isNil {
		r.Upstreams = make([]events.Upstream, n)
		for i := range r.Upstreams {
			r.Upstreams[i] = events.Upstream{URL: d.str(), Weight: d.num()}
		}
	}
	r.LoadBalancing = d.enum()
	if d.bool() {
		r.Resilience = d.resilience()
	}
	if d.bool() {
		r.Transform = d.transform()
	}
	return r, id, specStart
}

func (d *decoder) resilience() *events.Resilience {
	rs := &events.Resilience{}
	if d.bool() {
		rs.CircuitBreaker = &events.CircuitBreaker{Enabled: d.bool(), FailureThreshold: d.num(), SuccessThreshold: d.num(), Timeout: d.num()}
	}
	if d.bool() {
		rs.Retry = &events.Retry{Enabled: d.bool(), MaxRetries: d.num(), BaseDelayMs: d.num(), MaxDelayMs: d.num(),
			RetryableStatusCodes: d.ints(), RetryNonIdempotent: d.bool()}
	}
	if d.bool() {
		rs.Timeout = &events.Timeout{Enabled: d.bool(), Default: d.num(), ByMethod: d.intMap()}
	}
	if d.bool() {
		rs.HealthCheck = &events.HealthCheck{Enabled: d.bool(), Endpoint: d.str(), IntervalMs: d.num(), TimeoutMs: d.num(),
			HealthyThreshold: d.num(), UnhealthyThreshold: d.num()}
	}
	if d.bool() {
		rs.Fallback = &events.Fallback{Enabled: d.bool(), StatusCode: d.num(), ContentType: d.str(), Body: d.str()}
	}
	return rs
}

func (d *decoder) transform() *events.Transform {
	t := &events.Transform{}
	if d.bool() {
		t.Request = &events.RequestTransform{}
		if d.bool() {
			t.Request.Headers = d.headers()
		}
		if d.bool() {
			t.Request.Path = &events.PathRewrite{Pattern: d.str(), Replacement: d.str()}
		}
	}
	if d.bool() {
		t.Response = &events.ResponseTransform{}
		if d.bool() {
			t.Response.Headers = d.headers()
		}
	}
	return t
}

func (d *decoder) headers() *events.HeaderOps {
	return &events.HeaderOps{Set: d.strMap(), Add: d.strMap(), Remove: d.strs()}
}
