package admin

import (
	"bytes"
	"encoding/json"
	"slices"
)

// parsePatch parses a merge patch body: a JSON object whose top-level fields
// are all in allowed (a field outside the set is rejected even when null,
// which would otherwise be a silent no-op).
func parsePatch(body []byte, allowed ...string) (map[string]any, *Error) {
	v, err := parseJSON(body)
	if err != nil {
		return nil, err
	}
	obj, isObj := v.(map[string]any)
	if !isObj {
		return nil, errValidation(Detail{Field: "", Message: "a merge patch must be a JSON object"})
	}
	var details []Detail
	for k := range obj {
		if !slices.Contains(allowed, k) {
			details = append(details, Detail{Field: k, Message: "unknown field"})
		}
	}
	if len(details) > 0 {
		return nil, errValidation(details...)
	}
	return obj, nil
}

// sameJSON reports whether two values encode to the same JSON.
func sameJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}
