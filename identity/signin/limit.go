package signin

import (
	"net"
	"net/netip"
	"sync"
)

// MaxConnsPerAddr bounds one address's open connections to the page (a
// browser opens a few; a small NAT behind one address a few dozen). More
// are closed as they are accepted, so one client cannot take the
// listener's whole connection bound (serve's 1,024).
const MaxConnsPerAddr = 64

// LimitPerAddr returns ln with at most n open connections per client
// address: a connection beyond that is closed at once.
func LimitPerAddr(ln net.Listener, n int) net.Listener {
	return &perAddr{Listener: ln, max: n, open: map[netip.Addr]int{}}
}

type perAddr struct {
	net.Listener
	max  int
	mu   sync.Mutex
	open map[netip.Addr]int // bounded by the listener's own connection bound
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
		l.mu.Lock()
		if l.open[a] >= l.max {
			l.mu.Unlock()
			c.Close()
			continue
		}
		l.open[a]++
		l.mu.Unlock()
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
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.l.open[c.addr]--; c.l.open[c.addr] <= 0 {
			delete(c.l.open, c.addr)
		}
		c.l.mu.Unlock()
	})
	return err
}
