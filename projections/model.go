// Package projections turns the event log into the gateway's in-memory state:
// the pure Apply, the immutable Snapshot (tenants by key hash, per-tenant
// compiled route matchers) and the Projector that keeps it current.
package projections

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"regexp"
	"time"

	"github.com/tenantgate/gateway/events"
)

// KeyHash is the digest under which an API key is stored and looked up.
// Keys carry at least 128 random bits, so a plain SHA-256 cannot be reversed
// by guessing; events carry it hex-encoded.
func KeyHash(key []byte) [32]byte { return sha256.Sum256(key) }

// NewAPIKey issues a tenant API key: "gw_" and 256 random bits, base64url
// without padding. With it come what events store of it: the hex of its
// KeyHash and its first 7 characters, for display.
func NewAPIKey() (plain, hashHex, prefix string) {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand crashes the program instead)
	plain = "gw_" + base64.RawURLEncoding.EncodeToString(b[:])
	sum := KeyHash([]byte(plain))
	return plain, hex.EncodeToString(sum[:]), plain[:7]
}

// Tenant is a live tenant. Its JSON is the contract's tenant object (the key
// digest is never part of it).
type Tenant struct {
	ID        string              `json:"id"`
	Name      string              `json:"name"`
	Status    events.TenantStatus `json:"status"`
	RateLimit *events.RateLimit   `json:"rateLimit"`
	KeyPrefix string              `json:"apiKeyPrefix"`
	Version   int64               `json:"version"`
	CreatedAt time.Time           `json:"createdAt"`
	UpdatedAt time.Time           `json:"updatedAt"`

	KeyHash [32]byte `json:"-"`
}

// Route is a live route: its normalized spec plus identity, and the parts the
// request path needs compiled once per change rather than once per request.
type Route struct {
	ID string `json:"id"`
	events.RouteSpec
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`

	// PathRegexp is the compiled path of a regex route (nil otherwise).
	PathRegexp *regexp.Regexp `json:"-"`
	// Rewrite is the compiled request path rewrite (nil when none).
	Rewrite *regexp.Regexp `json:"-"`
}
