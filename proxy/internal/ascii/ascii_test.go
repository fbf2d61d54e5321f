package ascii

import (
	"strings"
	"testing"
)

func isTargetBytes(b []byte) bool {
	for _, c := range b {
		if c <= 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// FuzzWordChecks: the word-at-a-time checks agree with byte loops.
func FuzzWordChecks(f *testing.F) {
	for _, s := range []string{"", "plain value", "tab\there", "nul\x00", "del\x7f", "é 日本 \xff\x80", "12345678\x1f", "1234567\x7f89", "\x20\x20\x20\x20\x20\x20\x20\x20\x19", "/a/b?c=d#e"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		if got, want := IsFieldValue(v), isFieldValueBytes(v); got != want {
			t.Fatalf("IsFieldValue(%q) = %v, byte by byte %v", v, got, want)
		}
		if got, want := IsTarget(v), isTargetBytes(v); got != want {
			t.Fatalf("IsTarget(%q) = %v, byte by byte %v", v, got, want)
		}
	})
}

func TestWordChecksEveryByteEveryPosition(t *testing.T) {
	t.Parallel()
	for n := range 20 {
		for pos := range n {
			for c := range 256 {
				v := []byte(strings.Repeat("a", n))
				v[pos] = byte(c)
				if got, want := IsFieldValue(v), isFieldValueBytes(v); got != want {
					t.Fatalf("IsFieldValue: len %d, byte %#x at %d: %v, byte by byte %v", n, c, pos, got, want)
				}
				if got, want := IsTarget(v), isTargetBytes(v); got != want {
					t.Fatalf("IsTarget: len %d, byte %#x at %d: %v, byte by byte %v", n, c, pos, got, want)
				}
			}
		}
	}
}

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
