package proxy

import (
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
	tls := u.Scheme == "https"
	key := u.Scheme + "://" + u.Host
	hc, ok := p.clients.Load(key)
	if !ok {
		hc, _ = p.clients.LoadOrStore(key, &fasthttp.HostClient{
			DialTimeout:              p.dialUpstream,
			Addr:                     fasthttp.AddMissingPort(u.Host, tls),
			IsTLS:                    tls,
			MaxConns:                 p.cfg.MaxConnsPerUpstream,
			MaxResponseBodySize:      int(p.cfg.MaxResponseBytes),
			MaxIdleConnDuration:      90 * time.Second,
			NoDefaultUserAgentHeader: true,
			ReadBufferSize:           p.cfg.MaxHeaderBytes + headerSlack,
			// Our own retries decide; fasthttp's would replay non-idempotent
			// requests on a reused connection behind our back.
			RetryIfErr: func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		})
	}
	t := &target{scheme: u.Scheme, host: u.Host, base: u.Path, client: hc.(*fasthttp.HostClient)}
	v, _ := p.targets.LoadOrStore(raw, t)
	return v.(*target), nil
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
