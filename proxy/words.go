package proxy

// Tests on eight bytes at a time, loaded little-endian into a uint64: header
// values and access-log strings are checked a word per step instead of a
// byte per step. Each is exact as a boolean (a borrow can only start at a
// byte that matches), for any word.

const (
	lowBits  = 0x0101010101010101 // 0x01 in every byte
	highBits = 0x8080808080808080 // 0x80 in every byte
)

// hasByteBelow reports whether some byte of w is below n (n <= 0x80).
func hasByteBelow(w uint64, n byte) bool { return (w-lowBits*uint64(n))&^w&highBits != 0 }

// hasByte reports whether some byte of w equals b.
func hasByte(w uint64, b byte) bool { return hasByteBelow(w^lowBits*uint64(b), 1) }

// hasHighByte reports whether some byte of w is 0x80 or above.
func hasHighByte(w uint64) bool { return w&highBits != 0 }
