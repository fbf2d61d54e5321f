package proxy

import (
	"bytes"

	"github.com/valyala/fasthttp"
)

// FastHandler serves proxy traffic without Fiber's router and context (a
// context from its pool, a walk of the route stack, then Handler: about a
// tenth of the gateway's own CPU per request). Requests that could belong
// to one of app's routes go to app: a path starting with one of the
// reserved prefixes, compared ignoring case on both the path as sent and
// as normalized (Fiber matches case-insensitively and ignores a trailing
// slash), a path not starting with '/', and a method outside the standard
// ones (Fiber answers those itself). Everything else goes straight to the
// proxy, which is where app would have sent it. app must end in Handler.
func (p *Proxy) FastHandler(app fasthttp.RequestHandler, reserved ...string) fasthttp.RequestHandler {
	// Prefixes by the lowercased byte after their '/': a path is compared
	// only with those it could match (most paths, with none).
	var byInitial [256][][]byte
	var short [][]byte // "/" or a prefix not starting with '/'
	for _, r := range reserved {
		switch {
		case r == "":
		case len(r) < 2 || r[0] != '/':
			short = append(short, []byte(r))
		default:
			c := lowerASCII(r[1])
			byInitial[c] = append(byInitial[c], []byte(r))
		}
	}
	hasPrefix := func(path []byte, prefixes [][]byte) bool {
		for _, pfx := range prefixes {
			if len(path) >= len(pfx) && bytes.EqualFold(path[:len(pfx)], pfx) {
				return true
			}
		}
		return false
	}
	isReserved := func(path []byte) bool {
		if len(path) < 2 || path[0] != '/' {
			return len(path) == 0 || path[0] != '/' || hasPrefix(path, short)
		}
		return hasPrefix(path, byInitial[lowerASCII(path[1])]) || hasPrefix(path, short)
	}
	toApp := func(c *fasthttp.RequestCtx) {
		app(c)
		settleBody(c, false) // app's handlers read a body whole (Body) or not at all
	}
	return func(c *fasthttp.RequestCtx) {
		if !standardMethod(c.Request.Header.Method()) {
			toApp(c)
			return
		}
		x := acquireExchange()
		x.useTarget(&c.Request)
		if isReserved(x.uri.PathOriginal()) || isReserved(x.uri.Path()) {
			releaseExchange(x)
			toApp(c)
			return
		}
		p.handle(c, x)
	}
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func standardMethod(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE":
		return true
	}
	return false
}
