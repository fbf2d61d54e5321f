package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"
)

// parseJSON parses a body into generic values (numbers kept as json.Number so
// integers stay exact). Malformed JSON and trailing data are invalid_json.
func parseJSON(body []byte) (any, *Error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, errInvalidJSON("the request body is empty")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, errInvalidJSON("malformed JSON: " + strings.TrimPrefix(err.Error(), "json: "))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errInvalidJSON("malformed JSON: unexpected data after the JSON value")
	}
	return v, nil
}

// bind copies a parsed JSON value into dst (a pointer to a struct), strictly:
// unknown fields at every level and values of the wrong type are reported
// with their JSON path. A JSON null leaves a pointer, slice or map nil.
func bind(v any, dst any) *Error {
	var details []Detail
	bindValue(v, reflect.ValueOf(dst).Elem(), "", &details)
	if len(details) > 0 {
		return errValidation(details...)
	}
	return nil
}

func bindValue(v any, dst reflect.Value, path string, details *[]Detail) {
	fail := func(msg string) { *details = append(*details, Detail{Field: path, Message: msg}) }
	if dst.Kind() == reflect.Pointer {
		if v == nil {
			return
		}
		dst.Set(reflect.New(dst.Type().Elem()))
		bindValue(v, dst.Elem(), path, details)
		return
	}
	switch dst.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			fail("must be an object")
			return
		}
		fields := jsonFields(dst.Type())
		for key, val := range obj {
			i, ok := fields[key]
			if !ok {
				*details = append(*details, Detail{Field: joinPath(path, key), Message: "unknown field"})
				continue
			}
			bindValue(val, dst.Field(i), joinPath(path, key), details)
		}
	case reflect.Map:
		if v == nil {
			return
		}
		obj, ok := v.(map[string]any)
		if !ok {
			fail("must be an object")
			return
		}
		m := reflect.MakeMapWithSize(dst.Type(), len(obj))
		for key, val := range obj {
			elem := reflect.New(dst.Type().Elem()).Elem()
			bindValue(val, elem, path+"."+key, details)
			m.SetMapIndex(reflect.ValueOf(key), elem)
		}
		dst.Set(m)
	case reflect.Slice:
		if v == nil {
			return
		}
		arr, ok := v.([]any)
		if !ok {
			fail("must be an array")
			return
		}
		s := reflect.MakeSlice(dst.Type(), len(arr), len(arr))
		for i, val := range arr {
			bindValue(val, s.Index(i), path+"["+strconv.Itoa(i)+"]", details)
		}
		dst.Set(s)
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			fail("must be a string")
			return
		}
		if strings.IndexByte(s, 0) >= 0 {
			// PostgreSQL's jsonb cannot store \u0000, and no field needs it.
			fail("must not contain NUL characters")
			return
		}
		dst.SetString(s)
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			fail("must be a boolean")
			return
		}
		dst.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		n, ok := v.(json.Number)
		if !ok {
			fail("must be a number")
			return
		}
		i, err := strconv.ParseInt(n.String(), 10, 64)
		if err != nil {
			// 1.0 and 1e3 are integers too; anything else is not.
			f, ferr := n.Float64()
			if ferr != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
				fail("must be an integer")
				return
			}
			i = int64(f)
		}
		if dst.OverflowInt(i) {
			fail("must be an integer")
			return
		}
		dst.SetInt(i)
	default:
		fail("has an unsupported type")
	}
}

// jsonFields maps the JSON names of a struct's fields to their index.
func jsonFields(t reflect.Type) map[string]int {
	out := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = i
	}
	return out
}

// mergePatch applies an RFC 7396 JSON merge patch to target.
func mergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	} else {
		cp := make(map[string]any, len(t))
		for k, v := range t {
			cp[k] = v
		}
		t = cp
	}
	for k, v := range p {
		if v == nil {
			delete(t, k)
			continue
		}
		t[k] = mergePatch(t[k], v)
	}
	return t
}

// toGeneric turns a Go value into the generic form parseJSON produces.
func toGeneric(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out any
	err = dec.Decode(&out)
	return out, err
}
