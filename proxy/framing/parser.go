package framing

import (
	"bytes"
	"net/http"

	"github.com/tenantgate/gateway/proxy/internal/ascii"
)

// A Refusal is why the guard refused a request, and how it answers.
type Refusal struct {
	Status  int    // 400, 408 or 431
	Code    string // the contract's error code
	Reason  string // a short label for metrics and logs (never request bytes)
	Message string // human readable, for the error JSON
	// InBody: the request's head was passed on already (the fault is in its
	// chunked body), so the handler reading the body answers, not the guard.
	InBody bool
}

// Reasons, the values of Refusal.Reason.
const (
	ReasonBareLF        = "bare_lf"
	ReasonRequestLine   = "bad_request_line"
	ReasonVersion       = "bad_http_version"
	ReasonHeaderName    = "bad_header_name"
	ReasonHeaderValue   = "bad_header_value"
	ReasonObsFold       = "obs_fold"
	ReasonHeadTooLarge  = "head_too_large"
	ReasonLength        = "bad_content_length"
	ReasonDupLength     = "duplicate_content_length"
	ReasonCoding        = "bad_transfer_encoding"
	ReasonDupCoding     = "duplicate_transfer_encoding"
	ReasonLengthAndTE   = "content_length_and_transfer_encoding"
	ReasonDupHost       = "duplicate_host"
	ReasonChunkSize     = "bad_chunk_size"
	ReasonChunk         = "bad_chunk"
	ReasonTrailer       = "bad_trailer"
	ReasonHeadTimeout   = "head_timeout"
	codeInvalidRequest  = "invalid_request"
	codeHeadersTooLarge = "headers_too_large"
)

func refuse(reason, msg string) *Refusal {
	return &Refusal{Status: http.StatusBadRequest, Code: codeInvalidRequest, Reason: reason, Message: msg}
}

func refuseBody(reason, msg string) *Refusal {
	r := refuse(reason, msg)
	r.InBody = true
	return r
}

// phase is where in the request stream the parser is.
type phase uint8

const (
	phaseHead      phase = iota // a request line and header fields, up to the empty line
	phaseLength                 // the bytes of a Content-Length body
	phaseChunkSize              // a chunk-size line, extensions included
	phaseChunkData              // the bytes of one chunk
	phaseChunkEnd               // the CRLF after a chunk's data
	phaseTrailer                // trailer fields after the last chunk, up to the empty line
	phaseTunnel                 // after a protocol switch: opaque bytes
	phaseRefused                // nothing more is passed on
)

// Limits of the parts the parser holds back until they are whole.
const (
	maxChunkLine   = 4 << 10 // a chunk-size line with its extensions
	maxChunkDigits = 15      // hex digits of a chunk size: under 2^60
	maxLengthDigit = 18      // decimal digits of a Content-Length: under 10^18
)

// parser follows RFC 9112 message framing over a connection's request
// stream. It holds back a request's head until the whole head has arrived
// and checked out, so the server never parses a head the guard would refuse;
// body bytes pass as they come, chunk framing checked on the way.
type parser struct {
	phase   phase
	maxHead int   // longest head (request line + fields + empty line)
	left    int64 // bytes left in a Content-Length body or a chunk
	pos     int   // bytes of the current held part (head, chunk line, trailer) checked so far
	head    headFacts
	heads   int // heads passed, for tests
}

// headFacts is what the lines of a head said so far.
type headFacts struct {
	requestLine bool // seen
	http10      bool
	length      int64 // -1: no Content-Length
	chunked     bool
	host        bool
}

func newParser(maxHead int) parser {
	return parser{maxHead: maxHead, head: headFacts{length: -1}}
}

// advance checks b, the bytes that follow the last ones it passed, and
// returns how many of them may go to the server now. A part it must see
// whole (a head, a chunk-size line, a trailer) and that is not whole in b
// is not counted; the caller gives advance those bytes again, with more
// after them, once they arrive. A refusal ends the stream: the bytes before
// it may go, none after.
func (p *parser) advance(b []byte) (n int, r *Refusal) {
	for len(b) > 0 {
		var used int
		switch p.phase {
		case phaseHead:
			used, r = p.advanceHead(b)
		case phaseLength, phaseChunkData:
			used = int(min(p.left, int64(len(b))))
			p.left -= int64(used)
			if p.left == 0 {
				if p.phase == phaseLength {
					p.endBody()
				} else {
					p.phase = phaseChunkEnd
				}
			}
		case phaseChunkSize:
			used, r = p.advanceChunkSize(b)
		case phaseChunkEnd:
			if len(b) < 2 {
				if b[0] != '\r' {
					r = refuseBody(ReasonChunk, "chunk data not followed by CRLF")
				}
				break
			}
			if b[0] != '\r' || b[1] != '\n' {
				r = refuseBody(ReasonChunk, "chunk data not followed by CRLF")
				break
			}
			used, p.phase = 2, phaseChunkSize
		case phaseTrailer:
			used, r = p.advanceTrailer(b)
		case phaseTunnel:
			used = len(b)
		case phaseRefused:
			return n, nil
		}
		if r != nil {
			p.phase = phaseRefused
			return n, r
		}
		if used == 0 {
			return n, nil // the held part is not whole yet
		}
		n += used
		b = b[used:]
	}
	return n, nil
}

func (p *parser) endBody() {
	p.phase, p.pos, p.head = phaseHead, 0, headFacts{length: -1}
}

// advanceHead checks the lines of a head from p.pos on. It returns the
// head's length once the empty line that ends it checked out, else 0.
func (p *parser) advanceHead(b []byte) (int, *Refusal) {
	for {
		eol := bytes.IndexByte(b[p.pos:], '\n')
		if eol < 0 {
			if len(b) >= p.maxHead {
				return 0, &Refusal{Status: http.StatusRequestHeaderFieldsTooLarge, Code: codeHeadersTooLarge,
					Reason: ReasonHeadTooLarge, Message: "request headers too large"}
			}
			return 0, nil
		}
		eol += p.pos
		if eol+1 > p.maxHead {
			return 0, &Refusal{Status: http.StatusRequestHeaderFieldsTooLarge, Code: codeHeadersTooLarge,
				Reason: ReasonHeadTooLarge, Message: "request headers too large"}
		}
		if eol == 0 || b[eol-1] != '\r' {
			return 0, refuse(ReasonBareLF, "a line ends in LF without CR")
		}
		line := b[p.pos : eol-1]
		p.pos = eol + 1
		switch {
		case !p.head.requestLine && len(line) == 0:
			continue // empty lines before the request line are ignored (RFC 9112 2.2)
		case !p.head.requestLine:
			if r := p.requestLine(line); r != nil {
				return 0, r
			}
		case len(line) == 0:
			n := p.pos
			p.heads++
			return n, p.startBody()
		default:
			if r := p.field(line, &p.head); r != nil {
				return 0, r
			}
		}
	}
}

// requestLine checks method SP request-target SP HTTP-version.
func (p *parser) requestLine(line []byte) *Refusal {
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 || !ascii.IsToken(line[:sp]) {
		return refuse(ReasonRequestLine, "malformed request line")
	}
	rest := line[sp+1:]
	sp = bytes.IndexByte(rest, ' ')
	if sp <= 0 || !ascii.IsTarget(rest[:sp]) {
		return refuse(ReasonRequestLine, "malformed request line")
	}
	switch string(rest[sp+1:]) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		p.head.http10 = true
	default:
		if bytes.HasPrefix(rest[sp+1:], []byte("HTTP/")) {
			return refuse(ReasonVersion, "unsupported HTTP version")
		}
		return refuse(ReasonRequestLine, "malformed request line")
	}
	p.head.requestLine = true
	return nil
}

// field checks one field line (header or trailer) and records what framing
// needs of it in f.
func (p *parser) field(line []byte, f *headFacts) *Refusal {
	if line[0] == ' ' || line[0] == '\t' {
		return refuse(ReasonObsFold, "obsolete line folding")
	}
	colon := 0
	for colon < len(line) && ascii.Token[line[colon]] {
		colon++
	}
	if colon == 0 || colon == len(line) || line[colon] != ':' {
		return refuse(ReasonHeaderName, "malformed header field name")
	}
	name, value := line[:colon], line[colon+1:]
	if !ascii.IsFieldValue(value) {
		return refuse(ReasonHeaderValue, "control character in a header field value")
	}
	switch {
	case ascii.EqualFold(name, "content-length"):
		if f.length >= 0 {
			return refuse(ReasonDupLength, "more than one Content-Length")
		}
		n, ok := parseLength(ascii.TrimOWS(value))
		if !ok {
			return refuse(ReasonLength, "malformed Content-Length")
		}
		f.length = n
	case ascii.EqualFold(name, "transfer-encoding"):
		if f.chunked {
			return refuse(ReasonDupCoding, "more than one Transfer-Encoding")
		}
		if !ascii.EqualFold(ascii.TrimOWS(value), "chunked") {
			return refuse(ReasonCoding, "only Transfer-Encoding: chunked is accepted")
		}
		f.chunked = true
	case ascii.EqualFold(name, "host"):
		if f.host {
			return refuse(ReasonDupHost, "more than one Host")
		}
		f.host = true
	}
	return nil
}

// startBody decides the body's framing from the head (RFC 9112 6.3): a
// request with both Content-Length and Transfer-Encoding is refused, as is
// Transfer-Encoding on HTTP/1.0; chunked, a length, or no body.
func (p *parser) startBody() *Refusal {
	h := p.head
	p.pos = 0
	switch {
	case h.chunked && h.length >= 0:
		return refuse(ReasonLengthAndTE, "both Content-Length and Transfer-Encoding")
	case h.chunked && h.http10:
		return refuse(ReasonCoding, "Transfer-Encoding in an HTTP/1.0 request")
	case h.chunked:
		p.phase = phaseChunkSize
	case h.length > 0:
		p.phase, p.left = phaseLength, h.length
	default:
		p.endBody()
	}
	return nil
}

// advanceChunkSize checks chunk-size [ chunk-ext ] CRLF once the line is
// whole: 1 to 15 hex digits (no sign, no 0x), then optional extensions of
// visible characters, spaces and tabs.
func (p *parser) advanceChunkSize(b []byte) (int, *Refusal) {
	eol := bytes.IndexByte(b, '\n')
	if eol < 0 {
		if len(b) >= maxChunkLine {
			return 0, refuseBody(ReasonChunkSize, "chunk-size line too long")
		}
		return 0, nil
	}
	if eol == 0 || b[eol-1] != '\r' || eol >= maxChunkLine {
		return 0, refuseBody(ReasonChunkSize, "malformed chunk-size line")
	}
	line := b[:eol-1]
	var size int64
	digits := 0
	for digits < len(line) {
		v, ok := hexValue(line[digits])
		if !ok {
			break
		}
		size = size<<4 | int64(v)
		digits++
	}
	if digits == 0 || digits > maxChunkDigits {
		return 0, refuseBody(ReasonChunkSize, "malformed chunk size")
	}
	if ext := bytes.TrimLeft(line[digits:], " \t"); len(ext) > 0 && (ext[0] != ';' || !ascii.IsFieldValue(ext)) {
		return 0, refuseBody(ReasonChunkSize, "malformed chunk extension")
	}
	if size == 0 {
		p.phase, p.pos = phaseTrailer, 0
	} else {
		p.phase, p.left = phaseChunkData, size
	}
	return eol + 1, nil
}

// advanceTrailer checks trailer fields up to the empty line ending the
// body, held back until it is whole like a head (and bounded alike).
func (p *parser) advanceTrailer(b []byte) (int, *Refusal) {
	for {
		eol := bytes.IndexByte(b[p.pos:], '\n')
		if eol < 0 {
			if len(b) >= p.maxHead {
				return 0, refuseBody(ReasonTrailer, "trailer section too large")
			}
			return 0, nil
		}
		eol += p.pos
		if eol == 0 || b[eol-1] != '\r' || eol+1 > p.maxHead {
			return 0, refuseBody(ReasonTrailer, "malformed trailer section")
		}
		line := b[p.pos : eol-1]
		p.pos = eol + 1
		if len(line) == 0 {
			n := p.pos
			p.endBody()
			return n, nil
		}
		var ignored headFacts
		if r := p.field(line, &ignored); r != nil {
			r.InBody, r.Reason = true, ReasonTrailer
			return 0, r
		}
	}
}

func parseLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > maxLengthDigit {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func hexValue(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// midRequest reports whether the stream is inside a request: part of a
// head, or a body not read to its end.
func (p *parser) midRequest(held int) bool {
	switch p.phase {
	case phaseHead:
		return held > 0
	case phaseTunnel:
		return false
	}
	return true
}

// Passes reports whether the guard passes head, one whole request head
// (request line to empty line) with no body, under the default limits.
func Passes(head []byte) bool {
	p := newParser(DefaultMaxHeadBytes)
	n, r := p.advance(head)
	return r == nil && n == len(head) && p.phase == phaseHead
}
