// Package ascii holds the byte tests of the request path's HTTP parsing:
// RFC 9110 token and field-value characters, case-insensitive names.
package ascii

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
// among them.
func IsFieldValue(b []byte) bool {
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
