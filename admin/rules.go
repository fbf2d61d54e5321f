package admin

import (
	"fmt"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/invopop/validation"
)

// The rules below complement invopop/validation, whose threshold and In
// rules accept empty values (0, ""): here an explicit 0 or "" is checked
// like any other value, and only an absent (nil) field is skipped.

// required fails on an absent field (nil pointer, slice or map).
var required = validation.NotNil.Error("is required")

// between checks an integer against an inclusive range.
func between(lo, hi int64) validation.Rule {
	return validation.By(func(v any) error {
		n, ok := intValue(v)
		if ok && (n < lo || n > hi) {
			return fmt.Errorf("must be between %d and %d", lo, hi)
		}
		return nil
	})
}

func intValue(v any) (int64, bool) {
	v, isNil := validation.Indirect(v)
	if isNil {
		return 0, false
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int(), true
	}
	return 0, false
}

func stringValue(v any) (string, bool) {
	v, isNil := validation.Indirect(v)
	if isNil {
		return "", false
	}
	s, ok := v.(string)
	return s, ok
}

// oneOf checks a string against a set of allowed values.
func oneOf(allowed ...string) validation.Rule {
	return validation.By(func(v any) error {
		s, ok := stringValue(v)
		if ok && !slices.Contains(allowed, s) {
			return fmt.Errorf("must be one of %s", strings.Join(allowed, ", "))
		}
		return nil
	})
}

// notBlank rejects an empty or whitespace-only string.
var notBlank = validation.By(func(v any) error {
	s, ok := stringValue(v)
	if ok && strings.TrimSpace(s) == "" {
		return fmt.Errorf("must not be blank")
	}
	return nil
})

// maxChars limits a string's length in characters.
func maxChars(n int) validation.Rule {
	return validation.By(func(v any) error {
		s, ok := stringValue(v)
		if ok && utf8.RuneCountInString(s) > n {
			return fmt.Errorf("must be at most %d characters", n)
		}
		return nil
	})
}

// maxBytes limits a string's length in bytes.
func maxBytes(n int) validation.Rule {
	return validation.By(func(v any) error {
		s, ok := stringValue(v)
		if ok && len(s) > n {
			return fmt.Errorf("must be at most %d bytes", n)
		}
		return nil
	})
}

// startsWithSlash requires an absolute path.
var startsWithSlash = validation.By(func(v any) error {
	s, ok := stringValue(v)
	if ok && !strings.HasPrefix(s, "/") {
		return fmt.Errorf("must start with /")
	}
	return nil
})

// compiles requires an RE2 pattern that compiles.
var compiles = validation.By(func(v any) error {
	s, ok := stringValue(v)
	if !ok {
		return nil
	}
	if _, err := regexp.Compile(s); err != nil {
		return fmt.Errorf("must be a valid RE2 regular expression: %s", strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
	return nil
})

// count checks the number of elements of a slice that is present.
func count(lo, hi int) validation.Rule {
	return validation.By(func(v any) error {
		rv := reflect.ValueOf(v)
		if rv.Kind() != reflect.Slice || rv.IsNil() {
			return nil
		}
		if rv.Len() < lo || rv.Len() > hi {
			return fmt.Errorf("must have between %d and %d items", lo, hi)
		}
		return nil
	})
}

// upstreamURL requires an absolute http(s) URL with a host and nothing a
// base URL cannot carry: no query, fragment or credentials.
var upstreamURL = validation.By(func(v any) error {
	s, ok := stringValue(v)
	if !ok {
		return nil
	}
	const msg = "must be an absolute http or https URL"
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" || u.Hostname() == "" {
		return fmt.Errorf("%s", msg)
	}
	switch {
	case u.User != nil:
		return fmt.Errorf("must not contain credentials")
	case u.RawQuery != "" || u.ForceQuery:
		return fmt.Errorf("must not contain a query")
	case u.Fragment != "" || strings.Contains(s, "#"):
		return fmt.Errorf("must not contain a fragment")
	case strings.ContainsAny(s, " \t\r\n"):
		return fmt.Errorf("%s", msg)
	}
	return nil
})

// httpMethods are the methods a route may name (besides "*").
var httpMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}

// isToken reports whether s is an RFC 9110 token (a valid header name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// headerToken requires a valid header name.
var headerToken = validation.By(func(v any) error {
	s, ok := stringValue(v)
	if ok && !isToken(s) {
		return fmt.Errorf("must be a valid header name")
	}
	return nil
})

// headerMap checks the names and values of a header map; problems are
// reported per key so the path names the header.
var headerMap = validation.By(func(v any) error {
	m, ok := v.(map[string]string)
	if !ok || m == nil {
		return nil
	}
	errs := validation.Errors{}
	for k, val := range m {
		switch {
		case !isToken(k):
			errs[k] = fmt.Errorf("must be a valid header name")
		case strings.ContainsAny(val, "\r\n\x00"):
			errs[k] = fmt.Errorf("must not contain CR, LF or NUL")
		case len(val) > 8192:
			errs[k] = fmt.Errorf("must be at most 8192 bytes")
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
})

// noControl rejects CR, LF and NUL, which would split a header.
var noControl = validation.By(func(v any) error {
	s, ok := stringValue(v)
	if ok && strings.ContainsAny(s, "\r\n\x00") {
		return fmt.Errorf("must not contain CR, LF or NUL")
	}
	return nil
})
