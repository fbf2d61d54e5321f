// Package ascii holds the byte tests of the request path's HTTP parsing
// and encoding: RFC 9110 token and field-value characters, case-insensitive
// names, and tests on eight bytes at a time (header values and log strings
// are checked a word per step instead of a byte per step).
package ascii

import "encoding/binary"

// Token marks the characters of an RFC 9110 token (a method, a field name).
var Token = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// IsToken reports whether b is a non-empty token.
func IsToken(b []byte) bool {
	for _, c := range b {
		if !Token[c] {
			return false
		}
	}
	return len(b) > 0
}

// IsFieldValue reports whether b holds only visible characters, spaces,
// tabs and obs-text (0x80 and up): no other control character, NUL and CR
// among them. Most of a header block's bytes are values, so they are
// checked eight at a time; a word with a byte below 0x20 or 0x7f is
// checked byte by byte.
func IsFieldValue(b []byte) bool {
	for ; len(b) >= 8; b = b[8:] {
		w := binary.LittleEndian.Uint64(b)
		if (HasByteBelow(w, 0x20) || HasByte(w, 0x7f)) && !isFieldValueBytes(b[:8]) {
			return false
		}
	}
	return isFieldValueBytes(b)
}

func isFieldValueBytes(b []byte) bool {
	for _, c := range b {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// IsTarget reports whether b holds no space or control character, as a
// request target must not (obs-text passes, for clients that send raw
// UTF-8 paths).
func IsTarget(b []byte) bool {
	for ; len(b) >= 8; b = b[8:] {
		if w := binary.LittleEndian.Uint64(b); HasByteBelow(w, 0x21) || HasByte(w, 0x7f) {
			return false
		}
	}
	for _, c := range b {
		if c <= 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// TrimOWS trims the spaces and tabs around a field value (bytes.Trim
// builds its cutset's table on every call).
func TrimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// EqualFold compares b with s ignoring the case of ASCII letters only.
func EqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		if c, d := b[i], s[i]; c != d && (c|0x20 != d|0x20 || c|0x20 < 'a' || c|0x20 > 'z') {
			return false
		}
	}
	return true
}

// The word tests take eight bytes loaded little-endian into a uint64. Each
// is exact as a boolean (a borrow can only start at a byte that matches),
// for any word.
const (
	lowBits  = 0x0101010101010101 // 0x01 in every byte
	highBits = 0x8080808080808080 // 0x80 in every byte
)

// HasByteBelow reports whether some byte of w is below n (n <= 0x80).
func HasByteBelow(w uint64, n byte) bool { return (w-lowBits*uint64(n))&^w&highBits != 0 }

// HasByte reports whether some byte of w equals b.
func HasByte(w uint64, b byte) bool { return HasByteBelow(w^lowBits*uint64(b), 1) }

// HasHighByte reports whether some byte of w is 0x80 or above.
func HasHighByte(w uint64) bool { return w&highBits != 0 }
