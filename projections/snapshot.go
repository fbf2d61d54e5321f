package projections

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"slices"
	"strings"
	"sync"
)

// Snapshot is one immutable version of the gateway's state, valid right after
// event Seq(). Readers Load it once per request and never see it change.
//
// Its maps are persistent (see pmap): the next snapshot shares every part that
// an event did not touch, so an update costs about the same at any size.
type Snapshot struct {
	seq     int64
	lastID  string               // the id of event seq (not part of the state)
	tenants *strMap[tenantEntry] // by id
	byKey   *digestMap[*Tenant]
	byName  *strMap[*Tenant]
	routes  *strMap[routeEntry] // by id
	tables  *strMap[*table]     // by tenant id
	// unfiled: the routes are not filed in tables (a state loaded from a
	// checkpoint for a history query, which never matches a request); the
	// tables are built from routes when first needed.
	unfiled bool
	// named admin keys: by id, by key digest, by name
	keys       *strMap[adminKeyEntry]
	keysByHash *digestMap[*AdminKey]
	keysByName *strMap[*AdminKey]
	// sum is the XOR of the digests of every tenant and route; StateHash
	// adds seq. XOR is order-free, so it can be kept current per event.
	// configSum is the same over their config digests (ConfigHash).
	sum, configSum [32]byte

	cache *snapCache // lazily built sorted lists; nil on a zero Snapshot
}

type tenantEntry struct {
	t *Tenant
	digests
}

type routeEntry struct {
	r *Route
	digests
	// stale: digests not computed yet, nor in the sums; only ever inside
	// an edit (see edit.settle).
	stale bool
}

type snapCache struct {
	filedOnce   sync.Once
	filed       *Snapshot
	tenantsOnce sync.Once
	tenants     []*Tenant
	routesOnce  sync.Once
	routes      []*Route
}

// Empty is the state before any event (seq 0).
func Empty() *Snapshot { return &Snapshot{cache: &snapCache{}} }

// next returns a new, unpublished snapshot sharing all of s's state. A nil s
// is the empty state.
func (s *Snapshot) next() *Snapshot {
	if s == nil {
		return Empty()
	}
	return &Snapshot{
		seq: s.seq, lastID: s.lastID, tenants: s.tenants, byKey: s.byKey, byName: s.byName,
		routes: s.routes, tables: s.tables, unfiled: s.unfiled, keys: s.keys, keysByHash: s.keysByHash, keysByName: s.keysByName,
		sum: s.sum, configSum: s.configSum, cache: &snapCache{},
	}
}

// Size is the number of live tenants and routes: what loading the state
// from a checkpoint costs, in records.
func (s *Snapshot) Size() int { return s.tenants.len() + s.routes.len() }

// Seq is the seq of the last event applied.
func (s *Snapshot) Seq() int64 { return s.seq }

// LastEventID is the id of the last event applied ("" at seq 0), to tell
// whether a store holds the same history (it is not part of the state).
func (s *Snapshot) LastEventID() string { return s.lastID }

// Authenticate finds the tenant holding the key with this digest, whatever its
// status. The caller checks Status.
func (s *Snapshot) Authenticate(keyHash [32]byte) (*Tenant, bool) {
	return s.byKey.get(keyHash)
}

// Match finds the route of tenant t for a request. Only t's routes are ever
// considered. It matches against this snapshot's routes of the tenant with
// t's id (so a t taken from an older snapshot is still safe). The rules are
// documented on table; exact and prefix matching do not allocate.
func (s *Snapshot) Match(t *Tenant, method, path string) (*Route, bool) {
	if t == nil {
		return nil, false
	}
	if s.unfiled {
		return s.withTables().Match(t, method, path)
	}
	tb, ok := s.tables.get(t.ID)
	if !ok {
		return nil, false
	}
	r := tb.match(method, path)
	return r, r != nil
}

// Tenant returns a live tenant by id.
func (s *Snapshot) Tenant(id string) (*Tenant, bool) {
	e, ok := s.tenants.get(id)
	return e.t, ok
}

// TenantByName returns the live tenant with this name.
func (s *Snapshot) TenantByName(name string) (*Tenant, bool) {
	return s.byName.get(name)
}

// Tenants returns every live tenant ordered by id (ids are UUIDv7, so this is
// creation order). The slice is the caller's; the tenants are shared and must
// not be modified.
func (s *Snapshot) Tenants() []*Tenant {
	build := func() []*Tenant {
		out := make([]*Tenant, 0, s.tenants.len())
		s.tenants.all(func(_ string, e tenantEntry) bool {
			out = append(out, e.t)
			return true
		})
		slices.SortFunc(out, func(a, b *Tenant) int { return strings.Compare(a.ID, b.ID) })
		return out
	}
	if s.cache == nil {
		return build()
	}
	s.cache.tenantsOnce.Do(func() { s.cache.tenants = build() })
	return slices.Clone(s.cache.tenants)
}

// Route returns a live route by id.
func (s *Snapshot) Route(id string) (*Route, bool) {
	e, ok := s.routes.get(id)
	return e.r, ok
}

// Routes returns every live route ordered by id. The slice is the caller's;
// the routes are shared and must not be modified.
func (s *Snapshot) Routes() []*Route {
	build := func() []*Route {
		out := make([]*Route, 0, s.routes.len())
		s.routes.all(func(_ string, e routeEntry) bool {
			out = append(out, e.r)
			return true
		})
		sortRoutes(out)
		return out
	}
	if s.cache == nil {
		return build()
	}
	s.cache.routesOnce.Do(func() { s.cache.routes = build() })
	return slices.Clone(s.cache.routes)
}

// TenantRoutes returns a tenant's routes ordered by id (nil when none).
func (s *Snapshot) TenantRoutes(tenantID string) []*Route {
	if s.unfiled {
		return s.withTables().TenantRoutes(tenantID)
	}
	tb, ok := s.tables.get(tenantID)
	if !ok || tb.routes.len() == 0 {
		return nil
	}
	out := make([]*Route, 0, tb.routes.len())
	tb.routes.all(func(_ string, r *Route) bool {
		out = append(out, r)
		return true
	})
	sortRoutes(out)
	return out
}

// withTables is s with its routes filed in tables, built once. Only a
// history state needs it, and only if something matches against it: the
// projector serves filed states alone.
func (s *Snapshot) withTables() *Snapshot {
	if !s.unfiled {
		return s
	}
	s.cache.filedOnce.Do(func() {
		b := newEdit(s)
		b.fileTables()
		s.cache.filed = b.s
	})
	return s.cache.filed
}

func sortRoutes(rs []*Route) {
	slices.SortFunc(rs, func(a, b *Route) int { return strings.Compare(a.ID, b.ID) })
}

// StateHash is a digest of the whole state, equal on every instance at the
// same seq: SHA-256 over seq and the XOR of a SHA-256 per tenant and per
// route (over a canonical encoding of every field, the key digest included;
// see hash.go). It does not depend on map order or on how the snapshot was
// built, and costs one small SHA-256: the XOR is kept current by Apply.
func (s *Snapshot) StateHash() string {
	var buf [8 + 32]byte
	binary.BigEndian.PutUint64(buf[:8], uint64(s.seq))
	copy(buf[8:], s.sum[:])
	h := sha256.Sum256(buf[:])
	return hex.EncodeToString(h[:])
}

// ConfigHash is a digest of the configuration alone, what the declarative
// document holds (ids, names, statuses, rate limits, route specs; no keys,
// versions, timestamps or seq): equal for two stores holding the same
// configuration whatever their histories. Like StateHash it is kept current
// by Apply and costs one small SHA-256.
func (s *Snapshot) ConfigHash() string {
	h := sha256.Sum256(s.configSum[:])
	return hex.EncodeToString(h[:])
}

// SameConfig reports whether the tenant or route id is live in both s and
// other with the same configuration (what the declarative document holds of
// it: no key, version or timestamps), from the digests Apply keeps: a diff
// of two states of 100,000 routes compares no field of an unchanged one.
func (s *Snapshot) SameConfig(other *Snapshot, id string) bool {
	if a, ok := s.tenants.get(id); ok {
		b, ok := other.tenants.get(id)
		return ok && a.config == b.config
	}
	if a, ok := s.routes.get(id); ok {
		b, ok := other.routes.get(id)
		return ok && a.config == b.config
	}
	return false
}
