package ascii

import (
	"testing"
)

func TestEqualFold(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		b, s string
		want bool
	}{
		{"Content-Length", "content-length", true},
		{"CONTENT-LENGTH", "Content-Length", true},
		{"Content\rLength", "content-length", false}, // '\r'|0x20 is '-'
		{"chunked", "CHUNKED", true},
		{"chunkeD ", "chunked", false},
		{"x-api-kez", "X-Api-Key", false},
		{"@", "`", false}, // '@'|0x20 is '`', neither a letter
	} {
		if got := EqualFold([]byte(tc.b), tc.s); got != tc.want {
			t.Errorf("EqualFold(%q, %q) = %v", tc.b, tc.s, got)
		}
	}
}

func TestTrimOWS(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"": "", " \t ": "", " a b\t": "a b", "a": "a", "\ta\t\t": "a", "\x0ba ": "\x0ba"} {
		if got := string(TrimOWS([]byte(in))); got != want {
			t.Errorf("TrimOWS(%q) = %q, want %q", in, got, want)
		}
	}
}
