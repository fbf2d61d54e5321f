package proxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// dialFailed reports whether err happened before the request was sent.
func dialFailed(err error) bool {
	var op *net.OpError
	return errors.Is(err, fasthttp.ErrDialTimeout) || (errors.As(err, &op) && op.Op == "dial")
}

var errInvalidUpstream = errors.New("proxy: invalid upstream URL")

// upstreamPool keeps one fasthttp.HostClient per scheme+host for the life of
// the process, so a snapshot swap neither drops nor re-dials connections.
type upstreamPool struct {
	cfg     Config
	dial    fasthttp.DialFunc // nil: TCP (tests swap in memory pipes)
	targets sync.Map          // upstream URL as configured -> *target
	clients sync.Map          // scheme://host -> *fasthttp.HostClient
}

// target is an upstream URL parsed once.
type target struct {
	scheme, host, base string
	client             *fasthttp.HostClient
}

func newUpstreamPool(cfg Config) *upstreamPool { return &upstreamPool{cfg: cfg} }

func (p *upstreamPool) target(raw string) (*target, error) {
	if v, ok := p.targets.Load(raw); ok {
		return v.(*target), nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errInvalidUpstream
	}
	isTLS := u.Scheme == "https"
	key := u.Scheme + "://" + u.Host
	hc, ok := p.clients.Load(key)
	if !ok {
		hc, _ = p.clients.LoadOrStore(key, &fasthttp.HostClient{
			DialTimeout:              p.dialUpstream,
			Addr:                     fasthttp.AddMissingPort(u.Host, isTLS),
			IsTLS:                    isTLS,
			TLSConfig:                p.tlsConfig(u.Hostname()),
			MaxConns:                 p.cfg.MaxConnsPerUpstream,
			MaxIdleConnDuration:      90 * time.Second,
			NoDefaultUserAgentHeader: true,
			ReadBufferSize:           p.cfg.MaxHeaderBytes + headerSlack,
			// Health checks use the client's Do; the proxy uses roundTrip.
			// Our own retries decide; fasthttp's would replay non-idempotent
			// requests on a reused connection behind our back.
			RetryIfErr: func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		})
	}
	t := &target{scheme: u.Scheme, host: u.Host, base: u.Path, client: hc.(*fasthttp.HostClient)}
	v, _ := p.targets.LoadOrStore(raw, t)
	return v.(*target), nil
}

// tlsConfig verifies an https upstream named host against the configured
// roots. The name is set here, not left to fasthttp, which skips
// verification for an address it cannot split.
func (p *upstreamPool) tlsConfig(host string) *tls.Config {
	return &tls.Config{ServerName: host, RootCAs: p.cfg.UpstreamRoots, MinVersion: tls.VersionTLS12}
}

// certRejected reports whether err is an upstream's certificate failing
// verification: that upstream cannot answer this request, whatever a
// retry does.
func certRejected(err error) bool {
	var v *tls.CertificateVerificationError
	return errors.As(err, &v)
}

// prune drops targets no route uses any more, and clients no target uses.
func (p *upstreamPool) prune(live func(url string) bool) {
	used := make(map[string]bool)
	p.targets.Range(func(k, v any) bool {
		if !live(k.(string)) {
			p.targets.Delete(k)
			return true
		}
		t := v.(*target)
		used[t.scheme+"://"+t.host] = true
		return true
	})
	p.clients.Range(func(k, v any) bool {
		if !used[k.(string)] {
			p.clients.Delete(k)
			v.(*fasthttp.HostClient).CloseIdleConnections()
		}
		return true
	})
}

// dialUpstream dials an upstream (through p.dial when tests set one) and
// wraps the connection in an upstreamConn. timeout bounds the dial; 0: none.
func (p *upstreamPool) dialUpstream(addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	var err error
	switch {
	case p.dial != nil:
		c, err = p.dial(addr)
	case timeout > 0:
		c, err = fasthttp.DialTimeout(addr, timeout)
	default:
		c, err = fasthttp.Dial(addr)
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// roundTrip sends req to t and reads the answer's head into resp. A body
// with a Content-Length that came whole with the head (a small answer, the
// common case) is read into resp as well, and the connection goes back to
// the pool at once; any
// other body is left on the connection and returned as a stream, which the
// caller must close (the connection goes back to the pool only when the
// stream was read to its end). timeout bounds the time to the response's
// head, then each wait for more of a streamed body. It replaces fasthttp's
// transport, which keeps the head's deadline for the whole body (a long
// stream would be cut) and gives no hold on the connection of a body
// nobody reads any more.
func (t *target) roundTrip(req *fasthttp.Request, resp *fasthttp.Response, timeout time.Duration) (*stream, error) {
	hc := t.client
	resp.Reset()
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	cc, err := hc.AcquireConn(timeout, req.ConnectionClose())
	if err != nil {
		return nil, err
	}
	conn := cc.Conn()
	if err = conn.SetDeadline(deadline); err != nil {
		hc.CloseConn(cc)
		return nil, err
	}
	bw := hc.AcquireWriter(conn)
	if err = req.Write(bw); err == nil {
		err = bw.Flush()
	}
	hc.ReleaseWriter(bw)
	if err != nil {
		hc.CloseConn(cc)
		return nil, err
	}
	br := hc.AcquireReader(conn)
	if err = readHead(&resp.Header, br); err != nil {
		giveBack(hc, br, cc, false)
		return nil, err
	}
	reuse := !req.ConnectionClose() && !resp.ConnectionClose()
	cl := resp.Header.ContentLength()
	switch {
	case req.Header.IsHead() || bodyless(resp.StatusCode()):
		giveBack(hc, br, cc, reuse)
		return nil, nil
	case cl >= 0 && cl <= br.Buffered():
		err = resp.ReadBody(br, 0)
		giveBack(hc, br, cc, reuse && err == nil)
		return nil, err
	}
	// Only a stream pays for the closure (an allocation).
	return newStream(conn, br, cl, timeout, reuse, func(reuse bool) { giveBack(hc, br, cc, reuse) }), nil
}

// giveBack returns a connection's reader to its client's pool and the
// connection itself, or closes it. Generic because fasthttp's connection
// type is unexported: C is inferred from AcquireConn's result.
func giveBack[C any](hc interface {
	ReleaseReader(*bufio.Reader)
	ReleaseConn(C)
	CloseConn(C)
}, br *bufio.Reader, cc C, reuse bool) {
	hc.ReleaseReader(br)
	if reuse {
		hc.ReleaseConn(cc)
	} else {
		hc.CloseConn(cc)
	}
}

// readHead reads a response head, skipping interim answers (100 Continue,
// 103 Early Hints): the client gets the final one.
func readHead(h *fasthttp.ResponseHeader, br *bufio.Reader) error {
	for {
		if err := h.Read(br); err != nil {
			return err
		}
		if s := h.StatusCode(); s != fasthttp.StatusContinue && s != fasthttp.StatusEarlyHints {
			return nil
		}
	}
}

// bodyless reports whether a response with this status has no body
// whatever its headers say (RFC 9112, section 6.3).
func bodyless(status int) bool {
	return status < 200 || status == fasthttp.StatusNoContent || status == fasthttp.StatusNotModified
}
