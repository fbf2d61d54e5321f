package proxy

import (
	"net"
	"time"

	"github.com/valyala/fasthttp"
)

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
	return &upstreamConn{Conn: c}, nil
}

// upstreamConn moves its socket's deadlines only when they must move.
// fasthttp sets a write and a read deadline on every request, each a timer
// update in the runtime (together about 1,200 instructions, the largest
// cost left in the gateway's own work), and for back-to-back requests on a
// connection each deadline asked for is only microseconds past the last.
// The socket gets a deadline a 32nd of the time left later than asked, and
// keeps it while every later deadline asked for is no later than it and
// not more than that slack earlier: a timeout fires never early and at most
// about a 32nd of its length late. fasthttp uses a connection from one
// goroutine at a time, and closes it after a timeout.
type upstreamConn struct {
	net.Conn
	read, write lazyDeadline
}

func (c *upstreamConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *upstreamConn) SetReadDeadline(t time.Time) error {
	if set, ok := c.read.next(t); ok {
		return c.Conn.SetReadDeadline(set)
	}
	return nil
}

func (c *upstreamConn) SetWriteDeadline(t time.Time) error {
	if set, ok := c.write.next(t); ok {
		return c.Conn.SetWriteDeadline(set)
	}
	return nil
}

// lazyDeadline is the deadline on the socket and the slack it was given.
type lazyDeadline struct {
	set   time.Time // zero: none
	slack time.Duration
}

// next returns the deadline to put on the socket when t is asked for, and
// false when the one there already serves.
func (d *lazyDeadline) next(t time.Time) (time.Time, bool) {
	if t.IsZero() {
		if d.set.IsZero() {
			return t, false
		}
		d.set = time.Time{}
		return t, true
	}
	if !d.set.IsZero() && !d.set.Before(t) && d.set.Sub(t) <= d.slack {
		return d.set, false
	}
	d.slack = max(time.Until(t)/32, 0)
	d.set = t.Add(d.slack)
	return d.set, true
}
