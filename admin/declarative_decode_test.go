package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/tenantgate/gateway/admin/declarative"
)

// TestDecodeDocumentLongListsInOrder: a document long enough to be decoded
// on every core, and read in several runs of items, gives its routes in
// document order and its problems at their own items' paths, as
// item-by-item decoding does.
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

	n := 2*streamedItems + 100
	body, ids := build(n)
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

	bad := []int{3, 2047, 2500, 2501, streamedItems - 1, streamedItems, 2*streamedItems + 1, n - 1}
	body, _ = build(n, bad...)
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

// TestDecodeDocumentStreamedAsWhole: reading a body a run of items at a
// time answers what parsing it whole answers, for documents and for bodies
// it hands over to the whole parse.
func TestDecodeDocumentStreamedAsWhole(t *testing.T) {
	t.Parallel()
	const tid, rid = "0190a0b0-0000-7000-8000-00000000000a", "0190a0b0-0000-7000-8000-0000000000a1"
	tenant := `{"id":"` + tid + `","name":"a"}`
	route := `{"id":"` + rid + `","tenantId":"` + tid + `","path":"/a","upstreams":[{"url":"http://u:1"}]}`
	for _, body := range []string{
		`{"tenants":[` + tenant + `],"routes":[` + route + `],"dryRun":true}`,
		`{"at":3,"adminKeys":[],"routes":[` + route + `],"tenants":[` + tenant + `]}`,
		`{"tenants":[` + tenant + `,{"id":"x"}],"routes":[{"path":"b"}],"plan":1,"dryRun":"yes"}`,
		`{"tenants":null,"routes":{}}`, `{"tenants":[1,"a",null]}`, `{"tenants":[` + tenant + `],"tenants":[]}`,
		`{"tenants":[` + tenant + `]} {}`, `{"tenants":[` + tenant + `,]}`, `{"tenants":[`, `{}`, `{"a"}`,
		`[]`, `null`, ``, `  `, `{"tenants":[` + tenant + `]}` + "\n",
	} {
		for _, withDryRun := range []bool{false, true} {
			doc, dry, err := decodeDocumentBody([]byte(body), withDryRun)
			wantDoc, wantDry, wantErr := declarative.Document{}, false, (*Error)(nil)
			v, perr := parseJSON([]byte(body))
			if perr != nil {
				wantErr = perr
			} else {
				wantDoc, wantDry, wantErr = decodeDocument(v, withDryRun)
			}
			if !sameJSON(doc, wantDoc) || dry != wantDry || !sameJSON(err, wantErr) {
				t.Errorf("%s (dryRun allowed: %v): streamed %s %v %s, whole %s %v %s", body, withDryRun,
					mustJSON(t, doc), dry, mustJSON(t, err), mustJSON(t, wantDoc), wantDry, mustJSON(t, wantErr))
			}
		}
	}
}
