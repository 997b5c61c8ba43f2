package dns

import (
	"net"
	"net/netip"
	"slices"
)

// acl is the client access list: only these networks are served, so
// Gatehouse is never an open resolver.
type acl struct{ prefixes []netip.Prefix }

func (a *acl) allowed(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range a.prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// access is who may ask and how fast: the settings a reload changes on a
// running server (SetAccess). Queries read it through one atomic pointer.
type access struct {
	acl        acl
	rl         *rateLimiter
	qps, burst int
}

// SetAccess replaces the client access list (empty = DefaultACL) and the
// per-client rate limit (qps 0 = none) of a running server, as a config
// reload asks: the next query is decided by them. The rate limiter keeps
// its buckets when the limit is unchanged.
func (s *Server) SetAccess(allow []netip.Prefix, qps, burst int) {
	s.accessMu.Lock()
	defer s.accessMu.Unlock()
	if len(allow) == 0 {
		allow = DefaultACL()
	}
	old := s.access.Load()
	a := &access{acl: acl{slices.Clone(allow)}, qps: qps, burst: burst}
	if old != nil && old.qps == qps && old.burst == burst {
		a.rl = old.rl
	} else {
		a.rl = newRateLimiter(qps, burst, s.opts.Log)
	}
	s.access.Store(a)
}

// aclListener is an on-site TCP or DoT listener that closes a connection
// from an address the current ACL does not serve as it accepts it: before
// a TLS handshake or a query is read, and before it counts towards the
// listener's connection bounds (onSiteTCP), so outsiders cannot hold the
// connections the school's clients need. Each query is still checked
// (serve), as a reload may narrow the ACL while a connection is open.
type aclListener struct {
	net.Listener
	s *Server
}

func (l aclListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			ip, _ := netip.AddrFromSlice(a.IP)
			if !l.s.access.Load().acl.allowed(ip) {
				_ = c.Close()
				continue
			}
		}
		return c, nil
	}
}
