package events

import (
	"bytes"
	"encoding/json"
)

// Patch is a field of an update event: absent (not changed) or set to a new
// value, which may be JSON null. Use it with the `omitzero` tag option so an
// unset Patch is left out of the encoded event.
type Patch[T any] struct {
	Set   bool
	Value T
}

// NewPatch returns a set Patch holding v.
func NewPatch[T any](v T) Patch[T] { return Patch[T]{Set: true, Value: v} }

// PatchIf is NewPatch(v) when set, and the unset Patch otherwise.
func PatchIf[T any](set bool, v T) Patch[T] {
	if !set {
		return Patch[T]{}
	}
	return NewPatch(v)
}

// ApplyTo stores the new value in *dst when the field is set.
func (p Patch[T]) ApplyTo(dst *T) {
	if p.Set {
		*dst = p.Value
	}
}

// IsZero reports whether the field is absent; encoding/json's omitzero uses it.
func (p Patch[T]) IsZero() bool { return !p.Set }

// MarshalJSON encodes the value.
func (p Patch[T]) MarshalJSON() ([]byte, error) { return json.Marshal(p.Value) }

// UnmarshalJSON marks the field present and decodes its value (null included).
func (p *Patch[T]) UnmarshalJSON(b []byte) error {
	p.Set = true
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		var zero T
		p.Value = zero
		return nil
	}
	return json.Unmarshal(b, &p.Value)
}
