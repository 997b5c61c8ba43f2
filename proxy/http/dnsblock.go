package httpproxy

import (
	"context"
	"errors"
	"net/netip"

	"github.com/gatehouse-filter/gatehouse/policy"
)

// LookupBlocked reports whether the DNS resolver refuses host for client
// by policy although the name itself is allowed (a CNAME target or an
// address in its answer is blocked), and if so makes that refusal *d (its
// identity kept), as the proxy does when a dial's lookup is refused. The
// DNS block-page answer is given for such names too, so the block page
// served where it points (on port 80 and over HTTPS) must explain them.
func (s *Server) LookupBlocked(ctx context.Context, client netip.Addr, host string, d *policy.Decision) bool {
	if host == "" || d.Action == policy.Block {
		return d.Action == policy.Block
	}
	ctx, cancel := context.WithTimeout(ctx, s.dialer.Timeout)
	defer cancel()
	_, err := s.o.Resolver.LookupNetIP(ctx, client, host)
	var be *policy.BlockedError
	if !errors.As(err, &be) {
		return false
	}
	info := reqInfo{dec: *d}
	info.takeBlock(be)
	*d = info.dec
	return true
}
