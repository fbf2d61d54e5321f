package proxy

import (
	"strings"
	"testing"
)

func TestCanonicalNames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, got, want string
	}{
		{name: "request id", got: string(canonXRequestID), want: "X-Request-Id"},
		{name: "forwarded for", got: string(canonXForwardedFor), want: "X-Forwarded-For"},
		{name: "rate limit", got: string(canonRateLimitLimit), want: "X-Ratelimit-Limit"},
		{name: "retry after", got: string(canonRetryAfter), want: "Retry-After"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, tc.got, tc.want)
		}
	}
}

func TestDropIndex(t *testing.T) {
	t.Parallel()
	for i, name := range dropNames {
		if got := dropIndex([]byte(name)); got != i {
			t.Errorf("dropIndex(%q) = %d, want %d", name, got, i)
		}
	}
	for _, name := range []string{"", "Content-Type", "X-Api-Kez", "Connections", "Te ", strings.Repeat("X", 40)} {
		if got := dropIndex([]byte(name)); got != -1 {
			t.Errorf("dropIndex(%q) = %d, want -1", name, got)
		}
	}
}

// FuzzValidFieldValue: the word-at-a-time check agrees with the byte loop.
func FuzzValidFieldValue(f *testing.F) {
	for _, s := range []string{"", "plain value", "tab\there", "nul\x00", "del\x7f", "é 日本 \xff\x80", "12345678\x1f", "1234567\x7f89", "\x20\x20\x20\x20\x20\x20\x20\x20\x19"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		if got, want := validFieldValue(v), validFieldBytes(v); got != want {
			t.Fatalf("validFieldValue(%q) = %v, byte by byte %v", v, got, want)
		}
	})
}

func TestValidFieldValueEveryByteEveryPosition(t *testing.T) {
	t.Parallel()
	for n := range 20 {
		for pos := range n {
			for c := range 256 {
				v := []byte(strings.Repeat("a", n))
				v[pos] = byte(c)
				if got, want := validFieldValue(v), validFieldBytes(v); got != want {
					t.Fatalf("len %d, byte %#x at %d: %v, byte by byte %v", n, c, pos, got, want)
				}
			}
		}
	}
}

func TestDropIndexAnyCase(t *testing.T) {
	t.Parallel()
	for i, name := range dropNames {
		for _, spelled := range []string{name, strings.ToLower(name), strings.ToUpper(name)} {
			if got := dropIndex([]byte(spelled)); got != i {
				t.Errorf("dropIndex(%q) = %d, want %d", spelled, got, i)
			}
		}
	}
	for _, name := range []string{"", "Content-Type", "x-api-kez", "CONNECTIONS", "T_", "X-Api_Key", strings.Repeat("x", 40)} {
		if got := dropIndex([]byte(name)); got != -1 {
			t.Errorf("dropIndex(%q) = %d, want -1", name, got)
		}
	}
}
