// Package projections turns the event log into the gateway's in-memory state:
// the pure Apply, the immutable Snapshot (tenants by key hash, per-tenant
// compiled route matchers) and the Projector that keeps it current.
package projections

import (
	"crypto/sha256"
	"regexp"
	"time"

	"github.com/tenantgate/gateway/events"
)

// KeyHash is the digest under which an API key is stored and looked up.
// Keys carry at least 128 random bits, so a plain SHA-256 cannot be reversed
// by guessing; events carry it hex-encoded.
func KeyHash(key []byte) [32]byte { return sha256.Sum256(key) }

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
