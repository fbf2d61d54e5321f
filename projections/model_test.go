package projections

import (
	"encoding/hex"
	"strings"
	"testing"
)

func TestNewAPIKey(t *testing.T) {
	t.Parallel()
	plain, hash, prefix := NewAPIKey()
	if _, err := hex.DecodeString(hash); err != nil || len(hash) != 64 {
		t.Fatalf("hash %q is not 64 hex digits", hash)
	}
	sum := KeyHash([]byte(plain))
	if hash != hex.EncodeToString(sum[:]) || !strings.HasPrefix(plain, "gw_") || len(plain) != 46 || prefix != plain[:7] {
		t.Fatalf("key %d characters, hash and prefix do not describe it", len(plain))
	}
	if other, _, _ := NewAPIKey(); other == plain {
		t.Fatal("two keys alike")
	}
}
