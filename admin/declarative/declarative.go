// Package declarative is the gateway's configuration as a document: export
// the state (tenants and routes, without keys, versions or timestamps), plan
// the changes that turn the current state into a desired document, build the
// events that make them, and diff two states of the history. It is pure
// logic; the admin API and the command line do the I/O.
//
// Choices:
//
//   - Identity is the id. A tenant or route of the document whose id is not
//     live is created with that id; a live one absent from the document is
//     deleted (a tenant's routes first, each as its own event). Ids are
//     required in a document, so that applying it twice changes nothing.
//   - Changes are reported per top-level field, the granularity of the
//     update events: a changed nested block (resilience, transform,
//     upstreams, rateLimit) is one field with its whole old and new value.
//     A created aggregate lists every field that has a value with
//     "from": null, a deleted one every such field with "to": null.
//   - A route cannot move to another tenant (as in the admin API).
//   - An aggregate that existed before, was deleted and is created again
//     (rollback) continues its version sequence: its create event carries
//     the last version it had plus one, because the store keeps
//     (aggregateId, version) unique forever.
//   - A created tenant gets a new API key: keys are never rolled back.
//   - Diff of two states of the history also reports a key rotation, as a
//     change of apiKeyPrefix; Plan ignores keys.
package declarative

import (
	"bytes"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	json "github.com/goccy/go-json"
	"github.com/google/uuid"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

// TenantConfig is a tenant as the document holds it: the tenant object of
// the admin API without key, version and timestamps.
type TenantConfig struct {
	ID        string              `json:"id"`
	Name      string              `json:"name"`
	Status    events.TenantStatus `json:"status"`
	RateLimit *events.RateLimit   `json:"rateLimit"`
}

// RouteConfig is a route as the document holds it: its id and normalized spec.
type RouteConfig struct {
	ID string `json:"id"`
	events.RouteSpec
}

// Document is the declarative configuration: every tenant and route.
type Document struct {
	Tenants []TenantConfig `json:"tenants"`
	Routes  []RouteConfig  `json:"routes"`
	// AdminKeys lists the live admin keys (no secrets) for the record:
	// Plan and apply ignore it, since a key cannot be exported.
	AdminKeys []*projections.AdminKey `json:"adminKeys,omitempty"`
}

// Kind says what a change does to an aggregate.
type Kind string

// Change kinds.
const (
	Created Kind = "created"
	Updated Kind = "updated"
	Deleted Kind = "deleted"
)

// FieldChange is one top-level field's old and new value (nil: absent).
type FieldChange struct {
	From any `json:"from"`
	To   any `json:"to"`
}

// Change is what happens to one aggregate.
type Change struct {
	AggregateType events.AggregateType   `json:"aggregateType"`
	AggregateID   string                 `json:"aggregateId"`
	Change        Kind                   `json:"change"`
	Fields        map[string]FieldChange `json:"fields,omitempty"`

	// The desired aggregate of a create or update, for Events.
	tenant *TenantConfig
	route  *RouteConfig
}

// Export returns the state as a document, tenants and routes ordered by id.
func Export(s *projections.Snapshot) Document {
	doc := Document{Tenants: []TenantConfig{}, Routes: []RouteConfig{}}
	for _, t := range s.Tenants() {
		doc.Tenants = append(doc.Tenants, tenantConfig(t))
	}
	for _, r := range s.Routes() {
		doc.Routes = append(doc.Routes, routeConfig(r))
	}
	doc.AdminKeys = s.AdminKeys()
	if len(doc.AdminKeys) == 0 {
		doc.AdminKeys = nil
	}
	return doc
}

func tenantConfig(t *projections.Tenant) TenantConfig {
	return TenantConfig{ID: t.ID, Name: t.Name, Status: t.Status, RateLimit: cloneRateLimit(t.RateLimit)}
}

func routeConfig(r *projections.Route) RouteConfig {
	return RouteConfig{ID: r.ID, RouteSpec: r.RouteSpec}
}

func cloneRateLimit(rl *events.RateLimit) *events.RateLimit {
	if rl == nil {
		return nil
	}
	c := *rl
	return &c
}

// Problem is one inconsistency of a document, at a JSON path.
type Problem struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// InvalidError lists what is wrong with a document as a whole: duplicate
// ids or names, routes of tenants that are not in it, a route moved to
// another tenant. The fields of each tenant and route are validated by the
// admin API's rules before planning (see admin.DecodeDocument).
type InvalidError struct{ Problems []Problem }

func (e *InvalidError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.Field + ": " + p.Message
	}
	return "declarative: invalid document: " + strings.Join(parts, "; ")
}

// Check reports the document's inconsistencies against the current state
// (not nil) as an *InvalidError.
func Check(current *projections.Snapshot, desired Document) error {
	var probs []Problem
	add := func(field, format string, args ...any) {
		probs = append(probs, Problem{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	ids := map[string]string{} // id -> path of its first use, tenants and routes together
	checkID := func(p, id string) {
		switch {
		case id == "":
			add(p+".id", "is required")
		case ids[id] != "":
			add(p+".id", "is also the id of %s", ids[id])
		default:
			ids[id] = p
		}
	}
	names := map[string]string{}
	tenants := map[string]bool{}
	for i, t := range desired.Tenants {
		p := fmt.Sprintf("tenants[%d]", i)
		checkID(p, t.ID)
		if first, dup := names[t.Name]; dup {
			add(p+".name", "is also the name of %s", first)
		} else {
			names[t.Name] = p
		}
		tenants[t.ID] = true
	}
	for i, r := range desired.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		checkID(p, r.ID)
		if !tenants[r.TenantID] {
			add(p+".tenantId", "must be the id of a tenant in the document")
		}
		if cur, ok := current.Route(r.ID); ok && cur.TenantID != r.TenantID {
			add(p+".tenantId", "cannot be changed (the route belongs to tenant %s); give the route a new id", cur.TenantID)
		}
	}
	for i, t := range desired.Tenants {
		if _, ok := current.Route(t.ID); ok {
			add(fmt.Sprintf("tenants[%d].id", i), "is the id of a live route")
		}
	}
	for i, r := range desired.Routes {
		if _, ok := current.Tenant(r.ID); ok {
			add(fmt.Sprintf("routes[%d].id", i), "is the id of a live tenant")
		}
	}
	if len(probs) > 0 {
		slices.SortStableFunc(probs, func(a, b Problem) int { return strings.Compare(a.Field, b.Field) })
		return &InvalidError{Problems: probs}
	}
	return nil
}

// Plan lists the changes that turn current into desired, in the order their
// events must be appended: route deletions, tenant deletions, tenant
// creations and updates, route creations and updates, each group by id.
// Applying a document that equals the state gives no changes. desired must
// hold normalized values (defaults filled), as the admin API's decoding
// gives; Plan checks it with Check first.
func Plan(current *projections.Snapshot, desired Document) ([]Change, error) {
	if err := Check(current, desired); err != nil {
		return nil, err
	}
	return compare(Export(current), desired, nil, nil), nil
}

// field is one top-level field's name and value.
type field struct {
	name  string
	value any
}

func tenantFields(t TenantConfig, prefixes map[string]string) []field {
	fs := []field{{"name", t.Name}, {"status", t.Status}, {"rateLimit", t.RateLimit}}
	if prefixes != nil {
		fs = append(fs, field{"apiKeyPrefix", prefixes[t.ID]})
	}
	return fs
}

func routeFields(r RouteConfig) []field {
	return []field{
		{"tenantId", r.TenantID}, {"method", r.Method}, {"path", r.Path}, {"pathType", r.PathType},
		{"upstreams", r.Upstreams}, {"loadBalancing", r.LoadBalancing},
		{"resilience", r.Resilience}, {"transform", r.Transform},
	}
}

// fieldChanges compares two field lists of the same shape; a nil list is an
// absent aggregate.
func fieldChanges(from, to []field) map[string]FieldChange {
	out := map[string]FieldChange{}
	n := max(len(from), len(to))
	for i := range n {
		var fc FieldChange
		var name string
		if from != nil {
			name, fc.From = from[i].name, nilIfEmpty(from[i].value)
		}
		if to != nil {
			name, fc.To = to[i].name, nilIfEmpty(to[i].value)
		}
		if (fc.From == nil && fc.To == nil) || (from != nil && to != nil && (identical(fc.From, fc.To) || reflect.DeepEqual(fc.From, fc.To) || sameJSON(fc.From, fc.To))) {
			continue
		}
		out[name] = fc
	}
	return out
}

// nilIfEmpty turns typed nil pointers and slices into an untyped nil, so a
// FieldChange compares and prints as JSON null.
func nilIfEmpty(v any) any {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Map:
		if rv.IsNil() {
			return nil
		}
	}
	return v
}

// identical reports, without encoding them, that two field values are
// equal: equal strings (every scalar field), or the very same block or
// slice (an update keeps the blocks it does not touch). Otherwise
// reflect.DeepEqual, then sameJSON decide: equal values encode alike, and
// comparing them costs a tenth of encoding both (two states decoded from
// different checkpoints share no block).
func identical(a, b any) bool {
	if a == nil || b == nil {
		return false
	}
	ra, rb := reflect.ValueOf(a), reflect.ValueOf(b)
	if ra.Type() != rb.Type() {
		return false
	}
	switch ra.Kind() {
	case reflect.String:
		return ra.String() == rb.String()
	case reflect.Pointer:
		return ra.Pointer() == rb.Pointer()
	case reflect.Slice:
		return ra.Len() == rb.Len() && ra.Pointer() == rb.Pointer()
	}
	return false
}

// sameJSON uses go-json, which writes the same bytes as encoding/json in
// about a third of the time: Plan compares every route of a document.
func sameJSON(a, b any) bool {
	ja, erra := json.Marshal(a)
	jb, errb := json.Marshal(b)
	return erra == nil && errb == nil && bytes.Equal(ja, jb)
}

// compare lists the changes from one document to the other, comparing
// every aggregate in both. fromPrefixes and toPrefixes, if not nil, add the
// tenants' key prefixes to their fields.
func compare(from, to Document, fromPrefixes, toPrefixes map[string]string) []Change {
	fromT := indexBy(from.Tenants, func(t TenantConfig) string { return t.ID })
	toT := indexBy(to.Tenants, func(t TenantConfig) string { return t.ID })
	fromR := indexBy(from.Routes, func(r RouteConfig) string { return r.ID })
	toR := indexBy(to.Routes, func(r RouteConfig) string { return r.ID })

	var routeDeletes, tenantDeletes, tenantWrites, routeWrites []Change
	for _, r := range sortedValues(fromR) {
		if _, keep := toR[r.ID]; !keep {
			c, _ := newChange(events.AggregateRoute, r.ID, routeFields(r), nil)
			routeDeletes = append(routeDeletes, c)
		}
	}
	for _, t := range sortedValues(fromT) {
		if _, keep := toT[t.ID]; !keep {
			c, _ := newChange(events.AggregateTenant, t.ID, tenantFields(t, fromPrefixes), nil)
			tenantDeletes = append(tenantDeletes, c)
		}
	}
	for _, t := range sortedValues(toT) {
		var before []field
		if old, existed := fromT[t.ID]; existed {
			if fromPrefixes[t.ID] == toPrefixes[t.ID] && sameJSON(old, t) {
				continue
			}
			before = tenantFields(old, fromPrefixes)
		}
		if c, changed := newChange(events.AggregateTenant, t.ID, before, tenantFields(t, toPrefixes)); changed {
			c.tenant = &t
			tenantWrites = append(tenantWrites, c)
		}
	}
	for _, r := range sortedValues(toR) {
		var before []field
		if old, existed := fromR[r.ID]; existed {
			if sameJSON(old, r) {
				continue // the common case, compared in one go
			}
			before = routeFields(old)
		}
		if c, changed := newChange(events.AggregateRoute, r.ID, before, routeFields(r)); changed {
			c.route = &r
			routeWrites = append(routeWrites, c)
		}
	}
	out := slices.Concat(routeDeletes, tenantDeletes, tenantWrites, routeWrites)
	if out == nil {
		out = []Change{}
	}
	return out
}

// newChange is what happens to an aggregate whose fields go from before to
// after (nil: absent), and false for an update that changes no field.
func newChange(typ events.AggregateType, id string, before, after []field) (Change, bool) {
	c := Change{AggregateType: typ, AggregateID: id, Fields: fieldChanges(before, after)}
	switch {
	case after == nil:
		c.Change = Deleted
	case before == nil:
		c.Change = Created
	case len(c.Fields) == 0:
		return c, false
	default:
		c.Change = Updated
	}
	return c, true
}

func indexBy[T any](xs []T, id func(T) string) map[string]T {
	m := make(map[string]T, len(xs))
	for _, x := range xs {
		m[id(x)] = x
	}
	return m
}

func sortedValues[T any](m map[string]T) []T {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]T, len(keys))
	for i, k := range keys {
		out[i] = m[k]
	}
	return out
}

// IssuedKey is the API key of a tenant an apply created, shown once.
type IssuedKey struct {
	TenantID string `json:"tenantId"`
	Name     string `json:"name"`
	APIKey   string `json:"apiKey"`
}

// String keeps the key out of fmt output and logs.
func (k IssuedKey) String() string { return k.TenantID + " " + redact(k.APIKey) }

// LogValue keeps the key out of slog output.
func (k IssuedKey) LogValue() any { return k.String() }

func redact(key string) string { return key[:min(len(key), 7)] + "…" }

// Batch is the events of a plan, to append in one request, and the keys of
// the tenants it creates.
type Batch struct {
	Events []events.Envelope
	Keys   []IssuedKey
}

// Recreated lists the ids a plan creates: if any of them existed before,
// the caller must pass its last version to Events (see LastVersions).
func Recreated(changes []Change) []string {
	var ids []string
	for _, c := range changes {
		if c.Change == Created {
			ids = append(ids, c.AggregateID)
		}
	}
	return ids
}

// LastVersions maps each aggregate of evs to the highest version it reached.
func LastVersions(evs []events.Envelope) map[string]int64 {
	out := map[string]int64{}
	for _, ev := range evs {
		out[ev.AggregateID] = max(out[ev.AggregateID], ev.AggregateVersion)
	}
	return out
}

// Events builds one event per change, for changes Plan made against
// current. past maps ids of deleted aggregates a change creates again to
// the last version they had (nil when none were). Created tenants get fresh
// API keys, returned in the batch; only their digests go into the events.
func Events(current *projections.Snapshot, changes []Change, actor string, now time.Time, past map[string]int64) (Batch, error) {
	at := now.UTC().Truncate(time.Microsecond)
	var b Batch
	for _, c := range changes {
		version, tenantID, err := nextVersion(current, c, past)
		if err != nil {
			return Batch{}, err
		}
		var typ events.Type
		var data any
		switch {
		case c.AggregateType == events.AggregateTenant && c.Change == Created:
			plain, hash, prefix := projections.NewAPIKey()
			typ = events.TenantCreated
			data = events.TenantCreatedData{Name: c.tenant.Name, Status: c.tenant.Status, RateLimit: c.tenant.RateLimit,
				APIKeyHash: hash, APIKeyPrefix: prefix}
			b.Keys = append(b.Keys, IssuedKey{TenantID: c.AggregateID, Name: c.tenant.Name, APIKey: plain})
		case c.AggregateType == events.AggregateTenant && c.Change == Updated:
			typ, data = events.TenantUpdated, tenantUpdate(c)
		case c.AggregateType == events.AggregateTenant && c.Change == Deleted:
			typ, data = events.TenantDeleted, events.TenantDeletedData{}
		case c.AggregateType == events.AggregateRoute && c.Change == Created:
			typ, data = events.RouteCreated, c.route.RouteSpec
		case c.AggregateType == events.AggregateRoute && c.Change == Updated:
			typ, data = events.RouteUpdated, routeUpdate(c)
		case c.AggregateType == events.AggregateRoute && c.Change == Deleted:
			typ, data = events.RouteDeleted, events.RouteDeletedData{}
		default:
			return Batch{}, fmt.Errorf("declarative: cannot build an event for %s %s %s", c.Change, c.AggregateType, c.AggregateID)
		}
		// encoding/json: go-json ignores omitzero, which update events use.
		raw, err := stdjson.Marshal(data)
		if err != nil {
			return Batch{}, err
		}
		id, err := uuid.NewV7()
		if err != nil {
			return Batch{}, err
		}
		b.Events = append(b.Events, events.Envelope{
			ID: id.String(), Type: typ, AggregateType: c.AggregateType, AggregateID: c.AggregateID,
			AggregateVersion: version, TenantID: tenantID, Actor: actor, OccurredAt: at, Data: raw,
		})
	}
	return b, nil
}

// nextVersion is the version the change's event gives its aggregate, and the
// aggregate's tenant.
func nextVersion(current *projections.Snapshot, c Change, past map[string]int64) (int64, string, error) {
	if c.Change == Created {
		if (c.tenant == nil) == (c.route == nil) {
			return 0, "", errors.New("declarative: a created change must come from Plan")
		}
		tenantID := c.AggregateID
		if c.route != nil {
			tenantID = c.route.TenantID
		}
		return past[c.AggregateID] + 1, tenantID, nil
	}
	if c.AggregateType == events.AggregateTenant {
		t, ok := current.Tenant(c.AggregateID)
		if !ok {
			return 0, "", fmt.Errorf("declarative: tenant %s is not live", c.AggregateID)
		}
		if c.Change == Updated && c.tenant == nil {
			return 0, "", errors.New("declarative: an updated change must come from Plan")
		}
		return t.Version + 1, t.ID, nil
	}
	r, ok := current.Route(c.AggregateID)
	if !ok {
		return 0, "", fmt.Errorf("declarative: route %s is not live", c.AggregateID)
	}
	if c.Change == Updated && c.route == nil {
		return 0, "", errors.New("declarative: an updated change must come from Plan")
	}
	return r.Version + 1, r.TenantID, nil
}

func tenantUpdate(c Change) events.TenantUpdatedData {
	t := c.tenant
	return events.TenantUpdatedData{
		Name:      events.PatchIf(c.has("name"), t.Name),
		Status:    events.PatchIf(c.has("status"), t.Status),
		RateLimit: events.PatchIf(c.has("rateLimit"), t.RateLimit),
	}
}

func routeUpdate(c Change) events.RouteUpdatedData {
	r := c.route
	return events.RouteUpdatedData{
		Method:        events.PatchIf(c.has("method"), r.Method),
		Path:          events.PatchIf(c.has("path"), r.Path),
		PathType:      events.PatchIf(c.has("pathType"), r.PathType),
		Upstreams:     events.PatchIf(c.has("upstreams"), r.Upstreams),
		LoadBalancing: events.PatchIf(c.has("loadBalancing"), r.LoadBalancing),
		Resilience:    events.PatchIf(c.has("resilience"), r.Resilience),
		Transform:     events.PatchIf(c.has("transform"), r.Transform),
	}
}

// has reports whether the change touches field.
func (c Change) has(field string) bool {
	_, ok := c.Fields[field]
	return ok
}
