package httpproxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-filter/gatehouse/internal/peraddr"
)

// connLimits counts open client connections, overall and per address.
type connLimits struct {
	max, perClient int64
	total          atomic.Int64
	per            peraddr.Counts
}

func newConnLimits(max, perClient int) *connLimits {
	return &connLimits{max: int64(max), perClient: int64(perClient)}
}

// acquire counts a new connection from ip and reports whether it is over a
// cap (it is counted either way, and released on close).
func (l *connLimits) acquire(ip netip.Addr) (over bool, total int64) {
	total = l.total.Add(1)
	n := l.per.Add(ip)
	return total > l.max || n > l.perClient, total
}

func (l *connLimits) release(ip netip.Addr) {
	l.total.Add(-1)
	l.per.Done(ip)
}

// listener admits only allowed clients and counts connections.
type listener struct {
	net.Listener
	s *Server
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := addrOf(c.RemoteAddr())
		if !l.s.allowedClient(ip) {
			l.s.metrics.refused.WithLabelValues("acl").Inc()
			l.s.logRefused(ip)
			_ = c.Close()
			continue
		}
		over, total := l.s.limits.acquire(ip)
		if over && total > 2*l.s.limits.max {
			// Far over the cap: do not spend a goroutine on a 503.
			l.s.limits.release(ip)
			l.s.metrics.refused.WithLabelValues("cap").Inc()
			_ = c.Close()
			continue
		}
		cc := &clientConn{Conn: c, ip: ip, over: over, limits: l.s.limits}
		cc.tcp, _ = c.(*net.TCPConn)
		return cc, nil
	}
}

func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// clientConn is a client's connection: its address, whether it is over a
// connection cap, and its place in the counts until it closes (a hijacked
// CONNECT tunnel included).
type clientConn struct {
	net.Conn
	tcp    *net.TCPConn
	ip     netip.Addr
	over   bool
	limits *connLimits
	once   sync.Once
}

func (c *clientConn) Close() error {
	c.once.Do(func() { c.limits.release(c.ip) })
	return c.Conn.Close()
}

// CloseWrite and CloseRead let goproxy half-close tunnels.
func (c *clientConn) CloseWrite() error {
	if c.tcp != nil {
		return c.tcp.CloseWrite()
	}
	return nil
}

func (c *clientConn) CloseRead() error {
	if c.tcp != nil {
		return c.tcp.CloseRead()
	}
	return nil
}

// ReadFrom copies a tunnel's server-to-client direction (goproxy calls it
// through io.Copy); between TCP sockets it splices in the kernel.
func (c *clientConn) ReadFrom(src io.Reader) (int64, error) {
	if t, ok := src.(*targetConn); ok && c.tcp != nil && t.tcp != nil {
		return t.tun.pipe(c.tcp, t.tcp, &t.tun.down)
	}
	if c.tcp != nil {
		return c.tcp.ReadFrom(src)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, src)
}

// tunnel is one CONNECT tunnel's shared state.
type tunnel struct {
	s        *Server
	idle     time.Duration
	last     atomic.Int64 // unix nanos of the last traffic either way
	up, down atomic.Int64 // bytes client→site and site→client
	client   *clientConn
	info     *reqInfo
	checkTLS bool // the TLS port (443): a tunnel there that does not start with a ClientHello is refused
	closed   sync.Once
}

const chunk = 8 << 20

// pipe copies src to dst in chunks (spliced between TCP sockets), closing
// the tunnel when neither direction has moved for the idle timeout.
func (t *tunnel) pipe(dst *net.TCPConn, src *net.TCPConn, count *atomic.Int64) (int64, error) {
	var total int64
	lr := &io.LimitedReader{R: src}
	for {
		_ = src.SetReadDeadline(time.Now().Add(t.idle))
		lr.N = chunk
		n, err := dst.ReadFrom(lr)
		total += n
		if n > 0 {
			count.Add(n)
			t.last.Store(time.Now().UnixNano())
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && time.Since(time.Unix(0, t.last.Load())) < t.idle {
				continue // the other direction is busy
			}
			return total, err
		}
		if n == 0 {
			return total, nil // EOF
		}
	}
}

// targetConn is the site end of a CONNECT tunnel. goproxy copies the
// client's bytes into it with io.Copy, which lands in ReadFrom: the first
// bytes are checked for a TLS ClientHello there, and the rest is spliced.
type targetConn struct {
	net.Conn
	tcp *net.TCPConn
	tun *tunnel
}

func (c *targetConn) CloseWrite() error {
	if c.tcp != nil {
		return c.tcp.CloseWrite()
	}
	return nil
}

func (c *targetConn) CloseRead() error {
	if c.tcp != nil {
		return c.tcp.CloseRead()
	}
	return nil
}

func (c *targetConn) Close() error {
	c.tun.closed.Do(c.tun.finish)
	return c.Conn.Close()
}

// errNotTLS ends a tunnel whose first bytes were not TLS.
var errNotTLS = errors.New("tunnel traffic is not TLS")

// errSNIBlocked ends a tunnel whose ClientHello names a blocked site.
var errSNIBlocked = errors.New("tunnel's server name is blocked")

func (c *targetConn) ReadFrom(src io.Reader) (int64, error) {
	t := c.tun
	total, err := c.firstFlight(src)
	if err != nil {
		return total, err
	}
	if cc, ok := src.(*clientConn); ok && c.tcp != nil && cc.tcp != nil {
		n, err := t.pipe(c.tcp, cc.tcp, &t.up)
		return total + n, err
	}
	// The client sent bytes along with its CONNECT request (goproxy replays
	// them through a MultiReader): copy through a buffer.
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	for {
		if t.client != nil {
			_ = t.client.SetReadDeadline(time.Now().Add(t.idle))
		}
		n, err := src.Read(buf)
		if n > 0 {
			t.last.Store(time.Now().UnixNano())
			w, werr := c.send(buf[:n])
			total += w
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && time.Since(time.Unix(0, t.last.Load())) < t.idle {
				continue
			}
			return total, err
		}
	}
}

// firstFlight reads a tunnel's first bytes from the client, decides them
// and sends them on. The whole ClientHello (clienthello.go, at most 64
// KiB, across records) gives its first bytes to the non-TLS rule (on the
// TLS port) and its server name to the policy (sniBlocked) on every port:
// a school may open others (proxy.connect.ports), and a tunnel to an
// allowed name there could name a blocked site in its SNI. On another
// port, a tunnel whose first byte does not start a TLS record goes on as
// it is (its protocol's first message may be shorter than a record's
// header, and wait for an answer).
func (c *targetConn) firstFlight(src io.Reader) (int64, error) {
	t := c.tun
	if t.client != nil {
		_ = t.client.SetReadDeadline(time.Now().Add(t.idle))
	}
	if !t.checkTLS {
		var first [1]byte
		if _, err := io.ReadFull(src, first[:]); err != nil {
			return 0, err
		}
		if first[0] != recordHandshake && first[0] != recordAlert { // a server takes warning alerts before the hello
			t.last.Store(time.Now().UnixNano())
			return c.send(first[:])
		}
		src = io.MultiReader(bytes.NewReader(first[:]), src)
	}
	raw, hello, err := readClientHello(src)
	if len(raw) == 0 {
		return 0, err
	}
	t.last.Store(time.Now().UnixNano())
	switch {
	case errors.Is(err, errHelloNotTLS), errors.Is(err, errBadHello):
		if t.checkTLS && t.s.nonTLS(t, raw) {
			return 0, errNotTLS
		}
		err = nil
	case err == nil:
		if t.s.sniBlocked(t, hello) {
			return 0, errSNIBlocked
		}
	}
	total, werr := c.send(raw)
	if werr != nil {
		return total, werr
	}
	return total, err // not nil: the client went away, or was too slow, mid-hello
}

// send writes b, the client's, to the site.
func (c *targetConn) send(b []byte) (int64, error) {
	w, err := c.Conn.Write(b)
	c.tun.up.Add(int64(w))
	return int64(w), err
}

// isClientHello reports whether b starts like a TLS handshake record
// carrying a ClientHello: content type 22, a 3.x record version and, when
// enough bytes are there, handshake type 1.
func isClientHello(b []byte) bool {
	if len(b) < 2 || b[0] != 0x16 || b[1] != 0x03 {
		return false
	}
	if len(b) >= 3 && b[2] > 0x04 {
		return false
	}
	return len(b) < 6 || b[5] == 0x01
}
