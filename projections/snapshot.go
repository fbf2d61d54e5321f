package projections

// Snapshot is one immutable version of the gateway's state, valid right after
// event Seq(). Readers Load it once per request and never see it change.
type Snapshot struct {
	seq int64
}

// Empty is the state before any event (seq 0).
func Empty() *Snapshot { return &Snapshot{} }

// Seq is the seq of the last event applied.
func (s *Snapshot) Seq() int64 { return s.seq }

// Authenticate finds the tenant holding the key with this digest, whatever its
// status. The caller checks Status.
func (s *Snapshot) Authenticate(keyHash [32]byte) (*Tenant, bool) { panic("TODO") }

// Match finds the route of tenant t for a request. Only t's routes are ever
// considered.
func (s *Snapshot) Match(t *Tenant, method, path string) (*Route, bool) { panic("TODO") }

// Tenant returns a live tenant by id.
func (s *Snapshot) Tenant(id string) (*Tenant, bool) { panic("TODO") }

// TenantByName returns the live tenant with this name.
func (s *Snapshot) TenantByName(name string) (*Tenant, bool) { panic("TODO") }

// Tenants returns every live tenant ordered by id (ids are UUIDv7, so this is
// creation order).
func (s *Snapshot) Tenants() []*Tenant { panic("TODO") }

// Route returns a live route by id.
func (s *Snapshot) Route(id string) (*Route, bool) { panic("TODO") }

// Routes returns every live route ordered by id.
func (s *Snapshot) Routes() []*Route { panic("TODO") }

// TenantRoutes returns a tenant's routes ordered by id.
func (s *Snapshot) TenantRoutes(tenantID string) []*Route { panic("TODO") }

// StateHash is a digest of the whole state, equal on every instance at the
// same seq.
func (s *Snapshot) StateHash() string { panic("TODO") }
