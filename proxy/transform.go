package proxy

import (
	"regexp"
	"strings"

	"github.com/valyala/fasthttp"
)

// headerSet is what applyHeaderEdits needs of a request or response header.
type headerSet interface {
	Del(key string)
	SetCanonical(key, value []byte)
	AddBytesKV(key, value []byte)
}

// applyHeaderEdits applies a transform in the contract's order: remove,
// then set (replace), then add (append). Values expand ${tenant.id},
// ${tenant.name}, ${route.id} and ${request.id}. buf is scratch space,
// returned for reuse.
func applyHeaderEdits(h headerSet, e *headerEdits, x *exchange, buf []byte) []byte {
	for _, name := range e.remove {
		h.Del(name)
	}
	var v []byte
	for _, s := range e.set {
		v, buf = s.valueFor(x, buf)
		h.SetCanonical(s.name, v)
	}
	for _, a := range e.add {
		v, buf = a.valueFor(x, buf)
		h.AddBytesKV(a.name, v)
	}
	return buf
}

// valueFor is e's value for x's request: the literal, or the expansion
// written into buf (returned for reuse).
func (e headerEdit) valueFor(x *exchange, buf []byte) (value, scratch []byte) {
	if e.literal != nil {
		return e.literal, buf
	}
	buf = expand(buf[:0], e.value, x)
	return buf, buf
}

// expand appends v to dst with its placeholders replaced. Unknown
// placeholders are kept verbatim.
func expand(dst []byte, v string, x *exchange) []byte {
	for {
		i := strings.Index(v, "${")
		if i < 0 {
			return append(dst, v...)
		}
		dst = append(dst, v[:i]...)
		v = v[i:]
		j := strings.IndexByte(v, '}')
		if j < 0 {
			return append(dst, v...)
		}
		switch v[2:j] {
		case "tenant.id":
			dst = append(dst, x.tenant.ID...)
		case "tenant.name":
			dst = appendHeaderSafe(dst, x.tenant.Name)
		case "route.id":
			dst = append(dst, x.route.ID...)
		case "request.id":
			dst = append(dst, x.requestID...)
		default:
			dst = append(dst, v[:j+1]...)
		}
		v = v[j+1:]
	}
}

// appendHeaderSafe appends s with control characters replaced by spaces:
// a tenant name must not be able to end a header line and start another.
func appendHeaderSafe(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f {
			c = ' '
		}
		dst = append(dst, c)
	}
	return dst
}

// rewritePath is the route's RE2 replace on the request path (never the
// query). A result without a leading slash gets one.
func rewritePath(re *regexp.Regexp, replacement, path string) string {
	out := re.ReplaceAllString(path, replacement)
	if !strings.HasPrefix(out, "/") {
		out = "/" + out
	}
	return out
}

// joinPath appends base + path to dst, joined with exactly one slash: the
// upstream URL's path is a base the request path goes under. The result
// always starts with a slash.
func joinPath(dst []byte, base, path string) []byte {
	base = strings.TrimRight(base, "/")
	path = strings.TrimLeft(path, "/")
	dst = append(dst, base...)
	dst = append(dst, '/')
	return append(dst, path...)
}

// transformResponse applies the route's response header transform.
func (p *Proxy) transformResponse(x *exchange, resp *fasthttp.Response) {
	if e := x.state.respHeaders; e != nil {
		x.buf = applyHeaderEdits(&resp.Header, e, x, x.buf)
	}
}
