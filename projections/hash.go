package projections

import (
	"crypto/sha256"
	"hash"
	"sync"
)

// The state hash is the XOR of one digest per tenant and per route, so Apply
// keeps it current by XOR-ing out the old digest of what changed and XOR-ing
// in the new one. Each digest is SHA-256 over the aggregate's canonical
// encoding (codec.go). It is written by hand because it runs once per
// applied event and JSON encoding cost twice as much as the rest of a replay.
//
// The config hash is kept the same way, from a second digest per aggregate
// over the part of the encoding the declarative document holds (ids, names,
// statuses, limits, route specs; no keys, versions or timestamps).

// digests pairs an aggregate's two digests.
type digests struct {
	state  [32]byte
	config [32]byte
}

type digestScratch struct {
	enc encoder
	h   hash.Hash
}

// scratches are reused: a replay computes digests for every event.
var scratches = sync.Pool{New: func() any { return &digestScratch{enc: encoder{b: make([]byte, 0, 512)}, h: sha256.New()} }}

func getScratch() *digestScratch {
	s := scratches.Get().(*digestScratch)
	s.enc.b = s.enc.b[:0]
	return s
}

func putScratch(s *digestScratch) {
	if cap(s.enc.b) <= 64<<10 {
		scratches.Put(s)
	}
}

// configDigest is SHA-256 over tag and the given parts of the encoding.
func (s *digestScratch) configDigest(tag string, parts ...[]byte) [32]byte {
	s.h.Reset()
	s.h.Write([]byte(tag))
	for _, p := range parts {
		s.h.Write(p)
	}
	var out [32]byte
	s.h.Sum(out[:0])
	return out
}

func tenantDigests(t *Tenant) digests {
	s := getScratch()
	defer putScratch(s)
	p := s.enc.tenant(t)
	return s.tenantRecordDigests(s.enc.b, p)
}

// tenantRecordDigests are the digests of a tenant encoded as b (with its
// parts at p); a checkpoint's record is one, so loading it encodes nothing.
func tenantRecordDigests(b []byte, p encodedParts) digests {
	s := getScratch()
	defer putScratch(s)
	return s.tenantRecordDigests(b, p)
}

func (s *digestScratch) tenantRecordDigests(b []byte, p encodedParts) digests {
	return digests{state: sha256.Sum256(b), config: s.configDigest("tenant-config", b[p.configStart:p.configEnd])}
}

func routeDigests(r *Route) digests {
	s := getScratch()
	defer putScratch(s)
	id, spec := s.enc.route(r)
	return s.routeRecordDigests(s.enc.b, id, spec)
}

// routeRecordDigests is tenantRecordDigests for a route.
func routeRecordDigests(b []byte, id encodedParts, specStart int) digests {
	s := getScratch()
	defer putScratch(s)
	return s.routeRecordDigests(b, id, specStart)
}

func (s *digestScratch) routeRecordDigests(b []byte, id encodedParts, specStart int) digests {
	return digests{state: sha256.Sum256(b), config: s.configDigest("route-config", b[id.configStart:id.configEnd], b[specStart:])}
}

func tenantDigest(t *Tenant) [32]byte { return tenantDigests(t).state }

func routeDigest(r *Route) [32]byte { return routeDigests(r).state }

func xor(dst, d *[32]byte) {
	for i := range dst {
		dst[i] ^= d[i]
	}
}

// add XORs d into the sums (adding and removing are the same operation).
func (d *digests) addTo(state, config *[32]byte) {
	xor(state, &d.state)
	xor(config, &d.config)
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }
