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
