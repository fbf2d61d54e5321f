package proxy

import (
	"bytes"
	"errors"
	"math/bits"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/proxy/internal/ascii"
	"github.com/valyala/fasthttp"
)

// hopByHop are the RFC 9110 connection-scoped headers, never forwarded in
// either direction; headers named in Connection are dropped too.
var hopByHop = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer",
	"Transfer-Encoding", "Upgrade", "Proxy-Authorization", "Proxy-Authenticate",
}

// dropNames are the request headers never forwarded upstream, in
// fasthttp's normalized form: hop-by-hop (the first ones, in the order of
// hopByHop), the two key headers, and Expect (the gateway answered
// 100-continue itself).
var dropNames = [...]string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer",
	"Transfer-Encoding", "Upgrade", "Proxy-Authorization", "Proxy-Authenticate",
	"X-Api-Key", "X-Admin-Key", "Expect",
}

// dropIndex is the index in dropNames of name, in any case (as the client
// spelled it, or as fasthttp normalized it), or -1.
func dropIndex(name []byte) int {
	if len(name) >= len(dropByLen) {
		return -1
	}
	for set := dropByLen[len(name)]; set != 0; set &= set - 1 {
		if i := bits.TrailingZeros16(uint16(set)); ascii.EqualFold(name, dropNames[i]) {
			return i
		}
	}
	return -1
}

// dropByLen has, for each name length, the dropNames of that length: most
// headers have none, and are passed over without a comparison.
var dropByLen = func() (t [20]dropSet) {
	for i, d := range dropNames {
		t[len(d)] |= 1 << i
	}
	return t
}()

// dropSet has bit i set for dropNames[i].
type dropSet uint16

const dropAll = dropSet(1<<len(dropNames) - 1)

// scanned is what scanHeaders read in the client's header block.
type scanned struct {
	present   dropSet // the dropNames the client sent
	apiKey    []byte  // the first X-API-Key value, as Peek gives it
	requestID []byte  // the first X-Request-Id value, as Peek gives it
}

// scanHeaders reads the client's header block as received, in one pass over
// the raw bytes (fasthttp's AllInOrder would parse the block a second time
// and normalize every name): which of the never-forwarded names the client
// sent, and the two values the request path reads, which saves a Peek (a
// copy and normalization of the name, then a walk of the headers) for each.
// The block was checked by the framing guard before the server parsed it
// (token names right before their colon, no control characters, CRLF line
// ends), so the scan only splits it. A header not parsed from the wire is
// taken to hold every dropName, and its values are peeked.
func scanHeaders(h *fasthttp.RequestHeader) scanned {
	raw := h.RawHeaders()
	if len(raw) == 0 {
		return scanned{present: dropAll, apiKey: h.Peek(HeaderAPIKey), requestID: h.Peek(fiber.HeaderXRequestID)}
	}
	var s scanned
	for len(raw) > 0 {
		line := raw
		if eol := bytes.IndexByte(raw, '\n'); eol >= 0 {
			line, raw = raw[:eol], raw[eol+1:]
		} else {
			raw = nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			continue // the blank line ending the block
		}
		name, value := line[:colon], line[colon+1:]
		if i := dropIndex(name); i >= 0 {
			if i == apiKeyIndex && s.present&(1<<i) == 0 {
				s.apiKey = ascii.TrimOWS(value)
			}
			s.present |= 1 << i
		} else if s.requestID == nil && ascii.EqualFold(name, fiber.HeaderXRequestID) {
			s.requestID = ascii.TrimOWS(value)
		}
	}
	return s
}

var apiKeyIndex = dropIndex([]byte("X-Api-Key"))

// protected are framing headers a Connection token must not remove: dropping
// them would change how the body is delimited or where the request goes.
func protected(name []byte) bool {
	return bytes.EqualFold(name, []byte("Content-Length")) || bytes.EqualFold(name, []byte("Host"))
}

// stripRequest removes from up (a copy of orig) the headers that must not
// go upstream: those the scan found, those named in Connection, and the two
// key headers whatever the scan said (belt and braces for the secrets).
func stripRequest(orig, up *fasthttp.RequestHeader, present dropSet) {
	if present&1 != 0 {
		for _, v := range orig.PeekAll(fiber.HeaderConnection) {
			delConnectionTokens(up, v)
		}
	}
	present |= keyHeaders
	for ; present != 0; present &= present - 1 {
		up.Del(dropNames[bits.TrailingZeros16(uint16(present))])
	}
	up.ResetConnectionClose()
}

// keyHeaders are X-Api-Key and X-Admin-Key in dropNames.
var keyHeaders = dropSet(1<<apiKeyIndex | 1<<dropIndex([]byte("X-Admin-Key")))

// stripResponse removes the hop-by-hop headers of an upstream answer.
func stripResponse(h *fasthttp.ResponseHeader) {
	var found uint32
	for k := range h.All() {
		if i := dropIndex(k); i >= 0 && i < len(hopByHop) {
			found |= 1 << i // dropNames starts with hopByHop, in order
		}
	}
	if found == 0 {
		return
	}
	if found&1 != 0 { // Connection: its tokens first
		for _, v := range h.PeekAll(fiber.HeaderConnection) {
			delConnectionTokens(h, v)
		}
	}
	for i, name := range hopByHop {
		if found&(1<<i) != 0 {
			h.Del(name)
		}
	}
}

type deleter interface{ DelBytes([]byte) }

func delConnectionTokens(h deleter, v []byte) {
	for tok := range bytes.SplitSeq(v, []byte{','}) {
		tok = bytes.TrimSpace(tok)
		if len(tok) > 0 && !protected(tok) {
			h.DelBytes(tok)
		}
	}
}

// setForwarded writes X-Forwarded-For/-Proto/-Host. A trusted proxy's
// values are extended or kept; anyone else's are replaced.
func (p *Proxy) setForwarded(c *fasthttp.RequestCtx, x *exchange, up *fasthttp.Request) {
	req := (&c.Request)
	var room [64]byte // an address fits: no allocation
	peer, trusted := p.appendPeer(room[:0], c)

	buf := x.buf[:0]
	if trusted {
		for _, v := range req.Header.PeekAll(fiber.HeaderXForwardedFor) {
			if len(buf) > 0 {
				buf = append(buf, ", "...)
			}
			buf = append(buf, v...)
		}
	}
	if len(buf) > 0 {
		buf = append(buf, ", "...)
	}
	buf = append(buf, peer...)
	up.Header.SetCanonical(canonXForwardedFor, buf)
	x.buf = buf

	if !trusted || len(req.Header.Peek(fiber.HeaderXForwardedProto)) == 0 {
		if isTLS(c) {
			up.Header.SetCanonical(canonXForwardedProto, schemeHTTPS)
		} else {
			up.Header.SetCanonical(canonXForwardedProto, schemeHTTP)
		}
	}
	if !trusted || len(req.Header.Peek(fiber.HeaderXForwardedHost)) == 0 {
		up.Header.SetCanonical(canonXForwardedHost, req.Header.Host())
	}
}

func (p *Proxy) isTrusted(a netip.Addr) bool {
	for _, pfx := range p.trusted {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}

func parseTrusted(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if strings.Contains(s, "/") {
			pfx, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, errors.New("proxy: TrustedProxies: " + err.Error())
			}
			out = append(out, pfx.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, errors.New("proxy: TrustedProxies: " + err.Error())
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// Header names the request path sets on every request, in fasthttp's
// normalized form, so SetCanonical skips normalizing them per call.
var (
	canonXRequestID         = canonicalName(fiber.HeaderXRequestID)
	canonXForwardedFor      = canonicalName(fiber.HeaderXForwardedFor)
	canonXForwardedProto    = canonicalName(fiber.HeaderXForwardedProto)
	canonXForwardedHost     = canonicalName(fiber.HeaderXForwardedHost)
	canonRateLimitLimit     = canonicalName("X-RateLimit-Limit")
	canonRateLimitRemaining = canonicalName("X-RateLimit-Remaining")
	canonRateLimitReset     = canonicalName("X-RateLimit-Reset")
	canonRetryAfter         = canonicalName(fiber.HeaderRetryAfter)

	schemeHTTP, schemeHTTPS = []byte("http"), []byte("https")
)

// canonicalName is name as fasthttp stores it (and writes it on the wire).
func canonicalName(name string) []byte {
	var h fasthttp.ResponseHeader
	h.Set(name, "x")
	for k := range h.All() {
		if string(k) != fiber.HeaderContentType && string(k) != "Server" {
			return append([]byte(nil), k...)
		}
	}
	return []byte(name)
}

// headerEdits is a route's header transform ready to apply: names in
// fasthttp's canonical form (no normalizing per request), set and add in
// name order (a map's order would change from one request to the next), and
// each value either a literal or marked for placeholder expansion.
type headerEdits struct {
	remove   []string
	set, add []headerEdit
}

type headerEdit struct {
	name    []byte
	value   string
	literal []byte // value, when it has no placeholder
}

func compileHeaderOps(ops *events.HeaderOps) *headerEdits {
	if ops == nil {
		return nil
	}
	return &headerEdits{remove: slices.Clone(ops.Remove), set: compileEdits(ops.Set), add: compileEdits(ops.Add)}
}

func compileEdits(m map[string]string) []headerEdit {
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	slices.Sort(names)
	out := make([]headerEdit, 0, len(names))
	for _, name := range names {
		e := headerEdit{name: canonicalName(name), value: m[name]}
		if !strings.Contains(e.value, "${") {
			e.literal = []byte(e.value)
		}
		out = append(out, e)
	}
	return out
}

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
