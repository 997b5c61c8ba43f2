package dns

import "net/netip"

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
