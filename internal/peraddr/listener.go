package peraddr

import (
	"net"
	"net/netip"
	"sync"

	"golang.org/x/net/netutil"
)

// Limit returns ln with at most total open connections (more wait in the
// kernel's accept queue) and at most perAddr from one client address (more
// are closed at once, so one client cannot take them all).
func Limit(ln net.Listener, total, perAddr int) net.Listener {
	return netutil.LimitListener(LimitListener(ln, perAddr), total)
}

// LimitListener returns ln with at most n open connections per client
// address: a connection beyond that is closed at once (the sign-in page's
// listener, the admin and block-page listeners, DNS over TCP and DoT).
// The map of addresses holds only those with a connection open, so it is
// bounded by the listener's own connection bound.
func LimitListener(ln net.Listener, n int) net.Listener {
	return &perAddr{Listener: ln, max: int64(n)}
}

type perAddr struct {
	net.Listener
	max  int64
	open Counts
}

func (l *perAddr) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ap, aerr := netip.ParseAddrPort(c.RemoteAddr().String())
		if aerr != nil {
			return c, nil // not an IP peer (a test pipe): not counted
		}
		a := ap.Addr().Unmap()
		if l.open.Add(a) > l.max {
			l.open.Done(a)
			c.Close()
			continue
		}
		return &countedConn{Conn: c, l: l, addr: a}, nil
	}
}

type countedConn struct {
	net.Conn
	l    *perAddr
	addr netip.Addr
	once sync.Once
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.open.Done(c.addr) })
	return err
}
