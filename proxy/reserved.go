package proxy

import "bytes"

// reservedPaths are the path prefixes the gateway serves itself (/health,
// /ready, /metrics, /admin), which FastHandler leaves to the Fiber app. A
// path is compared ignoring case, as Fiber matches, and only with the
// prefixes sharing its first letter after '/' (most paths share none).
// A path not starting with '/' is reserved too (the app answers it).
type reservedPaths struct {
	byInitial [256][][]byte
	short     [][]byte // "/" or a prefix not starting with '/'
}

func newReservedPaths(prefixes []string) *reservedPaths {
	r := &reservedPaths{}
	for _, p := range prefixes {
		switch {
		case p == "":
		case len(p) < 2 || p[0] != '/':
			r.short = append(r.short, []byte(p))
		default:
			c := lowerASCII(p[1])
			r.byInitial[c] = append(r.byInitial[c], []byte(p))
		}
	}
	return r
}

func (r *reservedPaths) match(path []byte) bool {
	if len(path) < 2 || path[0] != '/' {
		return len(path) == 0 || path[0] != '/' || hasPrefixFold(path, r.short)
	}
	return hasPrefixFold(path, r.byInitial[lowerASCII(path[1])]) || hasPrefixFold(path, r.short)
}

func hasPrefixFold(path []byte, prefixes [][]byte) bool {
	for _, pfx := range prefixes {
		if len(path) >= len(pfx) && bytes.EqualFold(path[:len(pfx)], pfx) {
			return true
		}
	}
	return false
}
