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
	prefixes := make([][]byte, 0, len(reserved))
	for _, r := range reserved {
		if r != "" {
			prefixes = append(prefixes, []byte(r))
		}
	}
	isReserved := func(path []byte) bool {
		if len(path) == 0 || path[0] != '/' {
			return true
		}
		for _, pfx := range prefixes {
			if len(path) >= len(pfx) && bytes.EqualFold(path[:len(pfx)], pfx) {
				return true
			}
		}
		return false
	}
	return func(c *fasthttp.RequestCtx) {
		if !standardMethod(c.Request.Header.Method()) {
			app(c)
			return
		}
		x := acquireExchange()
		x.useTarget(&c.Request)
		if isReserved(x.uri.PathOriginal()) || isReserved(x.uri.Path()) {
			releaseExchange(x)
			app(c)
			return
		}
		p.handle(c, x)
	}
}

func standardMethod(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE":
		return true
	}
	return false
}
