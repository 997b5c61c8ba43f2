package httpproxy

// Where the proxy may connect. The policy decides on names; this decides on
// the address actually dialled, after the name is resolved and just before
// the socket is opened, so a name that resolves (or re-resolves: DNS
// rebinding) to the school's own network or the Gatehouse machine gets no
// further than a name written as that address. Every upstream path dials
// through Server.dialHost: the pool, net/http's Transport (goproxy's
// requests with bodies, https:// URLs and WebSocket upgrades, safe-search
// endpoints) and CONNECT tunnels. Pooled connections were checked when
// they were dialled, so a request on one costs nothing here.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
)

// addrClass is what kind of network an address is on.
type addrClass uint8

const (
	classPublic    addrClass = iota
	classPrivate             // RFC 1918, CGNAT, unique-local: only inside configured networks
	classLoopback            // only inside a configured network that lies within loopback
	classLinkLocal           // only inside a configured network that lies within link-local
	classNever               // unspecified, multicast, broadcast, reserved
)

var classNames = [...]string{"public", "private", "loopback", "link-local", "unroutable (unspecified, multicast, broadcast or reserved)"}

var (
	loopback4  = netip.MustParsePrefix("127.0.0.0/8")
	loopback6  = netip.MustParsePrefix("::1/128")
	linkLocal4 = netip.MustParsePrefix("169.254.0.0/16")
	linkLocal6 = netip.MustParsePrefix("fe80::/10")
	// Private besides netip's IsPrivate (RFC 1918, fc00::/7).
	morePrivate = []netip.Prefix{
		netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT
		netip.MustParsePrefix("fec0::/10"),     // deprecated site-local
		bl.LocalNAT64,                          // local-use NAT64 (one carrying no IPv4 address: classify)
	}
	never4 = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/8"), netip.MustParsePrefix("240.0.0.0/4")} // "this network"; reserved and broadcast
)

// classify says what kind of network a is on. An IPv6 address that carries
// an IPv4 address (IPv4-mapped, NAT64, 6to4, IPv4-compatible:
// bl.EmbeddedIPv4) is judged by the IPv4 address, which is returned as eff;
// a local-use NAT64 one (the school's own translator) is never public, but
// then private as itself.
func classify(a netip.Addr) (c addrClass, eff netip.Addr) {
	a = a.WithZone("").Unmap()
	if v4, ok := bl.EmbeddedIPv4(a); ok {
		if c, eff = classify(v4); c == classPublic && bl.LocalNAT64.Contains(a) {
			return classPrivate, a
		}
		return c, eff
	}
	switch {
	case !a.IsValid(), a.IsUnspecified(), a.IsMulticast(), inPrefixes(never4, a):
		return classNever, a
	case a.IsLoopback():
		return classLoopback, a
	case a.IsLinkLocalUnicast():
		return classLinkLocal, a
	case a.IsPrivate(), inPrefixes(morePrivate, a):
		return classPrivate, a
	}
	return classPublic, a
}

// reachable reports whether an address of class c may be dialled given the
// configured networks. Loopback and link-local addresses need a network
// that lies wholly within loopback or link-local (127.0.0.0/8, not
// 0.0.0.0/1), so a broad network cannot open them by accident.
func reachable(c addrClass, a netip.Addr, nets []netip.Prefix) bool {
	switch c {
	case classPublic:
		return true
	case classPrivate:
		return inPrefixes(nets, a)
	case classLoopback, classLinkLocal:
		within := loopback4
		switch {
		case c == classLoopback && a.Is6():
			within = loopback6
		case c == classLinkLocal && a.Is4():
			within = linkLocal4
		case c == classLinkLocal:
			within = linkLocal6
		}
		for _, n := range nets {
			if n.Contains(a) && n.Bits() >= within.Bits() && within.Contains(n.Addr()) {
				return true
			}
		}
	}
	return false
}

// internalError refuses to connect to an address on the school's own
// network or the Gatehouse machine.
type internalError struct {
	addr netip.AddrPort
	what string // "loopback", "private", "Gatehouse's own listener", ...
}

func (e *internalError) Error() string {
	return fmt.Sprintf("%s is a %s address, which the web filter does not connect to", e.addr, e.what)
}

// asInternal finds an *internalError in err's chain.
func asInternal(err error) *internalError {
	var ie *internalError
	if errors.As(err, &ie) {
		return ie
	}
	return nil
}

// checkAddr decides whether the proxy may connect to a:port; nets are the
// configured non-public networks for this kind of request.
func (s *Server) checkAddr(a netip.Addr, port uint16, nets []netip.Prefix) error {
	c, eff := classify(a)
	if s.own.is(eff, port) {
		return &internalError{addr: netip.AddrPortFrom(eff, port), what: "Gatehouse's own listener"}
	}
	if !reachable(c, eff, nets) {
		return &internalError{addr: netip.AddrPortFrom(eff, port), what: classNames[c]}
	}
	return nil
}

// controlDial is the dialer's last word, on the socket's own address just
// before it connects: whatever path a dial took, it never reaches an
// address that neither proxy.http.ip_networks nor proxy.connect.ip_networks
// allows, nor a Gatehouse listener. (dialHost has already applied the rule
// for the kind of request; this is the floor under it.)
func (s *Server) controlDial(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("dialling %q: not an address", address)
	}
	p := &s.o.Config().Proxy
	if s.checkAddr(ap.Addr(), ap.Port(), p.HTTP.IPNetworks) == nil {
		return nil
	}
	return s.checkAddr(ap.Addr(), ap.Port(), p.Connect.IPNetworks)
}

// ownListeners are the addresses Gatehouse listens on (proxy, admin, DNS).
// A listener on all addresses (or "localhost") is matched on its port
// against loopback and every address of the machine's interfaces (read at
// most every 10 s, and only when a dial goes to such a port).
type ownListeners struct {
	mu    sync.Mutex
	exact map[netip.AddrPort]bool
	any   map[uint16]bool
	local map[netip.Addr]bool
	read  time.Time
}

func newOwnListeners() *ownListeners {
	return &ownListeners{exact: map[netip.AddrPort]bool{}, any: map[uint16]bool{}}
}

// add records a listen address ("host:port", as in the config).
func (o *ownListeners) add(hostport string) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return // port 0: the bound address is added once known
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	a, err := netip.ParseAddr(host)
	a = a.WithZone("").Unmap()
	if err != nil || a.IsUnspecified() {
		o.any[uint16(p)] = true // "", "localhost", 0.0.0.0, [::]
		return
	}
	o.exact[netip.AddrPortFrom(a, uint16(p))] = true
}

func (o *ownListeners) is(a netip.Addr, port uint16) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.exact[netip.AddrPortFrom(a, port)] {
		return true
	}
	if !o.any[port] {
		return false
	}
	if a.IsLoopback() || a.IsUnspecified() {
		return true
	}
	if now := time.Now(); o.local == nil || now.Sub(o.read) > 10*time.Second {
		o.local, o.read = interfaceAddrs(), now
	}
	return o.local[a]
}

// interfaceAddrs lists the machine's own addresses.
func interfaceAddrs() map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return out
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if na, ok := netip.AddrFromSlice(n.IP); ok {
				out[na.Unmap()] = true
			}
		}
	}
	return out
}

// AddOwnListener adds an address Gatehouse listens on (the admin or DNS
// listener, once bound) to those the proxy never connects to. The
// proxy's own listener and the listen addresses in the config are known
// already.
func (s *Server) AddOwnListener(addr net.Addr) {
	if addr != nil {
		s.own.add(addr.String())
	}
}
