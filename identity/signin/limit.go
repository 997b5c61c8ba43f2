package signin

import (
	"net"
	"net/netip"
	"sync"

	"github.com/gatehouse-filter/gatehouse/internal/peraddr"
)

// MaxConnsPerAddr bounds one address's open connections to the page (a
// browser opens a few; a small NAT behind one address a few dozen). More
// are closed as they are accepted, so one client cannot take the
// listener's whole connection bound (serve's 1,024).
const MaxConnsPerAddr = 64

// LimitPerAddr returns ln with at most n open connections per client
// address: a connection beyond that is closed at once.
func LimitPerAddr(ln net.Listener, n int) net.Listener {
	return &perAddr{Listener: ln, max: int64(n)}
}

type perAddr struct {
	net.Listener
	max  int64
	open peraddr.Counts // bounded by the listener's own connection bound
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
