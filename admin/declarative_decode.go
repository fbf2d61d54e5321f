package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"runtime"
	"slices"
	"strconv"
	"sync"

	"github.com/google/uuid"

	"github.com/tenantgate/gateway/admin/declarative"
)

// DecodeDocument parses and validates a declarative document (the JSON of
// gateway export: {"tenants":[...],"routes":[...]}) with exactly the rules
// of POST /admin/tenants and POST /admin/routes, plus a required UUID id on
// each, and returns it normalized (defaults filled). Unknown fields are
// rejected at every level. Errors are *Error (invalid_json or
// validation_failed, with details at JSON paths such as
// "routes[2].upstreams[0].url"). The fields GET /admin/state adds (at, and
// version, createdAt, updatedAt, apiKeyPrefix on its items) are ignored, so
// a state document decodes too. Whole-document consistency (unique ids and
// names, routes of tenants in the document) is checked by declarative.Plan.
func DecodeDocument(body []byte) (declarative.Document, error) {
	doc, _, err := decodeDocumentBody(body, false)
	if err != nil {
		return declarative.Document{}, err
	}
	return doc, nil
}

// decodeDocumentBody is decodeDocument of a body, which it reads a run of
// list items at a time: parsed whole, the generic values of 100,000 routes
// held 400 MiB at once, only to be copied into the document. Any body it
// cannot stream (not an object, a key twice, a list that is not an array,
// malformed JSON) is parsed whole, which gives the answer it always gave.
func decodeDocumentBody(body []byte, withDryRun bool) (declarative.Document, bool, *Error) {
	whole := func() (declarative.Document, bool, *Error) {
		v, perr := parseJSON(body)
		if perr != nil {
			return declarative.Document{}, false, perr
		}
		return decodeDocument(v, withDryRun)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return whole()
	}
	var details []Detail
	doc := declarative.Document{Tenants: []declarative.TenantConfig{}, Routes: []declarative.RouteConfig{}}
	rest := map[string]any{} // the other keys, decoded as decodeDocument does
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		key, isKey := tok.(string)
		if err != nil || !isKey || seen[key] {
			return whole()
		}
		seen[key] = true
		if key != "tenants" && key != "routes" {
			var v any
			if err := dec.Decode(&v); err != nil {
				return whole()
			}
			rest[key] = v
			continue
		}
		if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
			return whole() // null, or not an array: said as it always was
		}
		for first := 0; dec.More(); {
			items := make([]any, 0, streamedItems)
			for len(items) < streamedItems && dec.More() {
				var v any
				if err := dec.Decode(&v); err != nil {
					return whole()
				}
				items = append(items, v)
			}
			if key == "tenants" {
				doc.Tenants = append(doc.Tenants, declEntries(key, first, items, maintainedTenant, &details, decodeTenantConfig)...)
			} else {
				doc.Routes = append(doc.Routes, declEntries(key, first, items, maintainedRoute, &details, decodeRouteConfig)...)
			}
			first += len(items)
		}
		if _, err := dec.Token(); err != nil { // ']'
			return whole()
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return whole()
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return whole() // trailing data
	}
	_, dryRun, derr := decodeDocument(rest, withDryRun) // rest holds no tenants or routes
	if derr != nil {
		details = append(details, derr.Details...)
	}
	if len(details) > 0 {
		return declarative.Document{}, false, errValidation(details...)
	}
	return doc, dryRun, nil
}

// streamedItems is how many list items decodeDocumentBody holds parsed at
// once: enough for declEntries to decode them on every core.
const streamedItems = 8192

// Fields of the GET /admin/state document that the gateway maintains itself.
// A document may carry them where the state has them, and they are ignored,
// so that a state body applies verbatim: the current state changes nothing,
// and the state at N is a rollback to N. Anywhere else they are unknown.
var (
	maintainedTop    = []string{"at", "adminKeys"} // apply never creates keys
	maintainedTenant = []string{"version", "createdAt", "updatedAt", "apiKeyPrefix"}
	maintainedRoute  = []string{"version", "createdAt", "updatedAt"}
)

// decodeDocument decodes a parsed document; withDryRun accepts the dryRun
// flag of POST /admin/apply.
func decodeDocument(v any, withDryRun bool) (declarative.Document, bool, *Error) {
	obj, isObj := v.(map[string]any)
	if !isObj {
		return declarative.Document{}, false, errValidation(Detail{Field: "", Message: "must be an object with tenants and routes"})
	}
	var details []Detail
	doc := declarative.Document{Tenants: []declarative.TenantConfig{}, Routes: []declarative.RouteConfig{}}
	dryRun := false
	for key, val := range obj {
		switch {
		case key == "tenants":
			items, d := declItems(val, key)
			details = append(details, d...)
			doc.Tenants = append(doc.Tenants, declEntries(key, 0, items, maintainedTenant, &details, decodeTenantConfig)...)
		case key == "routes":
			items, d := declItems(val, key)
			details = append(details, d...)
			doc.Routes = append(doc.Routes, declEntries(key, 0, items, maintainedRoute, &details, decodeRouteConfig)...)
		case key == "dryRun" && withDryRun:
			b, isBool := val.(bool)
			if !isBool && val != nil {
				details = append(details, Detail{Field: key, Message: "must be a boolean"})
			}
			dryRun = b
		case slices.Contains(maintainedTop, key):
		default:
			details = append(details, Detail{Field: key, Message: "unknown field"})
		}
	}
	if len(details) > 0 {
		return declarative.Document{}, false, errValidation(details...)
	}
	return doc, dryRun, nil
}

func decodeTenantConfig(id string, rest any) (declarative.TenantConfig, *Error) {
	f, err := decodeTenant(rest)
	return declarative.TenantConfig{ID: id, Name: f.Name, Status: f.Status, RateLimit: f.RateLimit}, err
}

func decodeRouteConfig(id string, rest any) (declarative.RouteConfig, *Error) {
	spec, err := decodeRoute(rest)
	return declarative.RouteConfig{ID: id, RouteSpec: spec}, err
}

// declEntries decodes items, the list under key from item first on, item
// by item: its id, then the rest without the maintained fields with
// decode. Items that fail add their details (at "key[i]...") and are left
// out.
//
// A long list is decoded on every core, in runs of consecutive items merged
// back in order (decode is pure): validating 100,000 routes was a quarter of
// an apply's time.
func declEntries[T any](key string, first int, items []any, maintained []string, details *[]Detail, decode func(id string, rest any) (T, *Error)) []T {
	type run struct {
		out      []T
		details  []Detail
		panicked any
	}
	decodeRun := func(from int, items []any) run {
		var r run
		for i, item := range items {
			path := key + "[" + strconv.Itoa(first+from+i) + "]"
			id, rest, d := declID(item, path, maintained)
			r.details = append(r.details, d...)
			if rest == nil {
				continue
			}
			v, err := decode(id, rest)
			if err != nil {
				r.details = append(r.details, prefixDetails(path, err)...)
				continue
			}
			r.out = append(r.out, v)
		}
		return r
	}
	const parallelFrom = 2048
	workers := runtime.GOMAXPROCS(0)
	if len(items) < parallelFrom || workers < 2 {
		r := decodeRun(0, items)
		*details = append(*details, r.details...)
		return r.out
	}
	size := (len(items) + workers - 1) / workers
	runs := make([]run, workers)
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := min(w*size, len(items)), min((w+1)*size, len(items))
		wg.Go(func() {
			defer func() {
				if v := recover(); v != nil {
					runs[w].panicked = v // raised again below, where the handler's recover sees it
				}
			}()
			runs[w] = decodeRun(lo, items[lo:hi])
		})
	}
	wg.Wait()
	out := make([]T, 0, len(items))
	for _, r := range runs {
		if r.panicked != nil {
			panic(r.panicked)
		}
		out = append(out, r.out...)
		*details = append(*details, r.details...)
	}
	return out
}

// declItems reads an array of objects; null or absent is empty.
func declItems(v any, path string) ([]any, []Detail) {
	if v == nil {
		return nil, nil
	}
	arr, isArr := v.([]any)
	if !isArr {
		return nil, []Detail{{Field: path, Message: "must be an array"}}
	}
	return arr, nil
}

// declID splits an item into its id (a UUID, returned in canonical form)
// and the rest, which is a create body once the maintained fields are left
// out. rest is nil when the item is not an object.
func declID(item any, path string, maintained []string) (string, map[string]any, []Detail) {
	obj, isObj := item.(map[string]any)
	if !isObj {
		return "", nil, []Detail{{Field: path, Message: "must be an object"}}
	}
	rest := make(map[string]any, len(obj))
	for k, v := range obj {
		if k != "id" && !slices.Contains(maintained, k) {
			rest[k] = v
		}
	}
	s, isStr := obj["id"].(string)
	if !isStr || s == "" {
		return "", rest, []Detail{{Field: path + ".id", Message: "is required and must be a UUID"}}
	}
	id, err := uuid.Parse(s)
	if err != nil || len(s) != 36 {
		return "", rest, []Detail{{Field: path + ".id", Message: "must be a UUID (8-4-4-4-12 hex digits)"}}
	}
	return id.String(), rest, nil
}

func prefixDetails(prefix string, e *Error) []Detail {
	if e.Code != "validation_failed" {
		return []Detail{{Field: prefix, Message: e.Message}}
	}
	out := make([]Detail, len(e.Details))
	for i, d := range e.Details {
		out[i] = Detail{Field: joinPath(prefix, d.Field), Message: d.Message}
		if d.Field == "" {
			out[i].Field = prefix
		}
	}
	return out
}

// invalidDocument maps declarative.Check's problems to a validation error.
func invalidDocument(err error) *Error {
	var inv *declarative.InvalidError
	if !errors.As(err, &inv) {
		return errInternal
	}
	details := make([]Detail, len(inv.Problems))
	for i, p := range inv.Problems {
		details[i] = Detail{Field: p.Field, Message: p.Message}
	}
	return errValidation(details...)
}
