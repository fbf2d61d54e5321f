package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/google/uuid"
)

// TestDecodeDocumentLongListsInOrder: a document long enough to be decoded
// on every core gives its routes in document order and its problems at their
// own items' paths, as item-by-item decoding does.
func TestDecodeDocumentLongListsInOrder(t *testing.T) {
	t.Parallel()
	tenant := uuid.NewString()
	build := func(n int, bad ...int) ([]byte, []string) {
		routes := make([]map[string]any, n)
		ids := make([]string, n)
		for i := range routes {
			ids[i] = uuid.NewString()
			path := fmt.Sprintf("/r%d", i)
			if slices.Contains(bad, i) {
				path = "no-slash"
			}
			routes[i] = map[string]any{"id": ids[i], "tenantId": tenant, "path": path, "upstreams": []any{map[string]any{"url": "http://10.0.0.1"}}}
		}
		body, err := json.Marshal(map[string]any{"tenants": []any{map[string]any{"id": tenant, "name": "t"}}, "routes": routes})
		if err != nil {
			t.Fatal(err)
		}
		return body, ids
	}

	body, ids := build(5000)
	doc, err := DecodeDocument(body)
	if err != nil {
		t.Fatal(err)
	}
	if len(doc.Routes) != len(ids) {
		t.Fatalf("%d routes decoded, want %d", len(doc.Routes), len(ids))
	}
	for i, r := range doc.Routes {
		if r.ID != ids[i] || r.Path != fmt.Sprintf("/r%d", i) {
			t.Fatalf("routes[%d] is %s %s, want %s /r%d", i, r.ID, r.Path, ids[i], i)
		}
	}

	bad := []int{3, 2047, 2500, 2501, 4999}
	body, _ = build(5000, bad...)
	_, err = DecodeDocument(body)
	var ae *Error
	if !errors.As(err, &ae) {
		t.Fatalf("a document with bad paths decoded (%v)", err)
	}
	var got, want []string
	for _, d := range ae.Details {
		got = append(got, d.Field)
	}
	for _, i := range bad {
		want = append(want, fmt.Sprintf("routes[%d].path", i))
	}
	slices.Sort(want) // errValidation orders details by field
	if !slices.Equal(got, want) {
		t.Fatalf("details at %v, want %v", got, want)
	}
}
