// Package events defines the gateway's event log: the envelope every change is
// recorded in, the typed payloads of each event, the Store that appends and
// reads the log, and the Bus that fans new events out to every instance.
package events

import (
	"encoding/json"
	"time"
)

// Type names an event. The names are written into the store and never derived
// from Go type names, so renaming a Go type cannot break history.
type Type string

// The event types of the contract.
const (
	TenantCreated       Type = "TenantCreated"
	TenantUpdated       Type = "TenantUpdated"
	TenantAPIKeyRotated Type = "TenantApiKeyRotated"
	TenantDeleted       Type = "TenantDeleted"
	RouteCreated        Type = "RouteCreated"
	RouteUpdated        Type = "RouteUpdated"
	RouteDeleted        Type = "RouteDeleted"
	AdminKeyCreated     Type = "AdminKeyCreated"
	AdminKeyRevoked     Type = "AdminKeyRevoked"
)

// AggregateType is the kind of thing an event changes.
type AggregateType string

// The aggregate types.
const (
	AggregateTenant   AggregateType = "tenant"
	AggregateRoute    AggregateType = "route"
	AggregateAdminKey AggregateType = "adminKey"
)

// Envelope is one event as stored and published. Seq is assigned by the store
// at append time: global, gap-free and in commit order, starting at 1.
type Envelope struct {
	Seq              int64         `json:"seq"`
	ID               string        `json:"id"`
	Type             Type          `json:"type"`
	AggregateType    AggregateType `json:"aggregateType"`
	AggregateID      string        `json:"aggregateId"`
	AggregateVersion int64         `json:"aggregateVersion"`
	TenantID         string        `json:"tenantId"`
	Actor            string        `json:"actor"`
	// ActorKeyID is the id of the named admin key that made the change
	// ("" for the root key and the command line).
	ActorKeyID string          `json:"actorKeyId,omitempty"`
	OccurredAt time.Time       `json:"occurredAt"`
	Data       json.RawMessage `json:"data"`
}

// AggregateTypeOf returns the aggregate type an event type belongs to.
func AggregateTypeOf(t Type) AggregateType {
	switch t {
	case RouteCreated, RouteUpdated, RouteDeleted:
		return AggregateRoute
	case AdminKeyCreated, AdminKeyRevoked:
		return AggregateAdminKey
	default:
		return AggregateTenant
	}
}

// Known reports whether t is one of the contract's event types.
func (t Type) Known() bool {
	switch t {
	case TenantCreated, TenantUpdated, TenantAPIKeyRotated, TenantDeleted,
		RouteCreated, RouteUpdated, RouteDeleted, AdminKeyCreated, AdminKeyRevoked:
		return true
	}
	return false
}
