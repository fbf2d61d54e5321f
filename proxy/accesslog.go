package proxy

import (
	"log/slog"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
)

func tenantID(x *exchange) string {
	if x.tenant == nil {
		return ""
	}
	return x.tenant.ID
}

func routeID(x *exchange) string {
	if x.route == nil {
		return ""
	}
	return x.route.ID
}

// observe records the finished request: metrics and one access-log line
// (request id, tenant, route, upstream, status, duration; never a key).
func (p *Proxy) observe(c *fasthttp.RequestCtx, x *exchange) {
	if x.status == 0 {
		x.status = (&c.Response).StatusCode()
	}
	d := time.Since(x.start)
	tenant, route := tenantID(x), routeID(x)
	if m := p.metrics; m != nil {
		var s *series
		if x.route != nil {
			s = x.route.series
		} else {
			s = m.series(tenant, route)
		}
		s.requests[classOf(x.status)].Inc()
		if x.streaming {
			s.latency.Observe(x.headLatency.Seconds()) // the rest is in stream_duration_seconds
		} else {
			s.latency.Observe(d.Seconds())
		}
		s.in.Add(float64(x.body.sent()))
		if !x.streaming {
			s.out.Add(float64(len(c.Response.Body())))
		}
		if x.code == "fallback" {
			s.fallbacks.Inc()
		}
	}
	if w := p.cfg.AccessLog; w != nil {
		x.buf = appendAccessLine(x.buf[:0], x, x.start.Add(d), d)
		_, _ = w.Write(x.buf)
		return
	}
	h := p.log.Handler()
	if !h.Enabled(c, slog.LevelInfo) {
		return
	}
	// Straight to the handler: Logger.LogAttrs would walk the stack for a
	// source position on every request.
	r := slog.NewRecord(x.start.Add(d), slog.LevelInfo, "proxy", 0)
	r.AddAttrs(
		slog.String("request_id", string(x.requestID)),
		slog.String("method", x.method),
		slog.String("tenant", tenant),
		slog.String("route", route),
		slog.String("upstream", x.upstreamURL()),
		slog.Int("attempts", x.attempts),
		slog.Int("status", x.status),
		slog.String("code", x.code),
		slog.Duration("duration", d),
	)
	if x.streaming {
		r.AddAttrs(slog.Int64("bytes_out", x.streamed))
	}
	_ = h.Handle(c, r)
}

// appendAccessLine appends the access-log line slog's JSONHandler would
// write for observe's record, newline included. Through slog a request
// cost 37 % more instructions (13,800: the attribute slice and generic
// encoding; scripts/bench/README.md); this is a few appends.
func appendAccessLine(b []byte, x *exchange, at time.Time, d time.Duration) []byte {
	b = append(b, `{"time":"`...)
	b = at.AppendFormat(b, time.RFC3339Nano) // as slog's JSONHandler
	b = append(b, `","level":"INFO","msg":"proxy","request_id":`...)
	b = appendJSONString(b, x.requestID)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, x.method)
	if x.route != nil { // the route's, encoded once
		b = append(b, x.route.logIDs...)
	} else {
		b = appendLogIDs(b, tenantID(x), routeID(x))
	}
	b = append(b, `,"upstream":`...)
	if x.upstream >= 0 {
		b = append(b, x.route.logURLs[x.upstream]...)
	} else {
		b = append(b, `""`...)
	}
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(x.attempts), 10)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(x.status), 10)
	b = append(b, `,"code":`...)
	b = appendJSONString(b, x.code)
	b = append(b, `,"duration":`...)
	b = strconv.AppendInt(b, int64(d), 10)
	if x.streaming { // the line is written when the stream ends
		b = append(b, `,"bytes_out":`...)
		b = strconv.AppendInt(b, x.streamed, 10)
	}
	return append(b, "}\n"...)
}

// appendLogIDs appends the access line's tenant and route fields.
func appendLogIDs(b []byte, tenant, route string) []byte {
	b = append(b, `,"tenant":`...)
	b = appendJSONString(b, tenant)
	b = append(b, `,"route":`...)
	return appendJSONString(b, route)
}

// jsonSafe marks the ASCII bytes appendJSONString copies as they are.
var jsonSafe = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendJSONString appends s quoted as slog does: quote, backslash and
// control characters escaped, invalid UTF-8 as U+FFFD, U+2028 and U+2029
// escaped; no HTML escaping.
func appendJSONString[S string | []byte](b []byte, s S) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		// A run of bytes that need no escaping goes in one append.
		j := i
		for j < len(s) && jsonSafe[s[j]] {
			j++
		}
		if j > i {
			b = append(b, s[i:j]...)
			if i = j; i == len(s) {
				break
			}
		}
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			b = append(b, string(s[i:i+size])...)
		}
		i += size
	}
	return append(b, '"')
}
