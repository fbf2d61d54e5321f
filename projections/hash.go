package projections

import (
	"crypto/sha256"
	"encoding/json"
)

// The state hash is the XOR of one digest per tenant and per route, so Apply
// keeps it current by XOR-ing out the old digest of what changed and XOR-ing
// in the new one. Each digest is SHA-256 over a type tag and the entity's
// JSON: encoding/json writes struct fields in declaration order and map keys
// sorted, so the bytes depend only on the entity's content.

func tenantDigest(t *Tenant) [32]byte {
	h := sha256.New()
	h.Write([]byte("tenant\x00"))
	mustEncode(h, t)
	h.Write(t.KeyHash[:]) // not part of the JSON, but part of the state
	var d [32]byte
	h.Sum(d[:0])
	return d
}

func routeDigest(r *Route) [32]byte {
	h := sha256.New()
	h.Write([]byte("route\x00"))
	mustEncode(h, r)
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// mustEncode writes v's JSON. Tenants and routes hold only strings, numbers,
// maps with string keys and times that Apply checked to be encodable, so
// encoding cannot fail; if it ever did, the error text keeps the digest
// deterministic rather than crashing the projector.
func mustEncode(h interface{ Write([]byte) (int, error) }, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte("unencodable: " + err.Error())
	}
	h.Write(b)
}

func xor(dst, d *[32]byte) {
	for i := range dst {
		dst[i] ^= d[i]
	}
}
