package dns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	mdns "github.com/miekg/dns"

	"github.com/gatehouse-filter/gatehouse/policy"
)

// ErrBlocked matches (errors.Is) the *policy.BlockedError LookupNetIP
// returns when a CNAME target or an address in the answer is blocked for
// the client.
var ErrBlocked = policy.ErrBlocked

// LookupNetIP resolves host's A and AAAA records for client the way a DNS
// query would be: through the shared cache, the upstreams (health checks,
// failover, DNS-over-TLS) and the forwarded zones, with every CNAME target
// checked against the client's policy and every address against the IP
// lists (as answerBlocked does for a query). A blocked answer is a
// *policy.BlockedError carrying the decision. It is for the HTTP proxy,
// which has already decided on host itself and records the event, so it
// records none and applies no safe-search rewrite (the proxy dials the
// rewritten host).
func (s *Server) LookupNetIP(ctx context.Context, client netip.Addr, host string) ([]netip.Addr, error) {
	name := normName(host)
	if ip, err := netip.ParseAddr(name); err == nil {
		return []netip.Addr{ip}, nil
	}
	type result struct {
		addrs []netip.Addr
		err   error
	}
	eng := s.opts.Engine()
	qr := query{client: client.Unmap(), now: s.opts.Now()}
	s.identify(&qr)
	base := qr.request("")
	set := s.ups.Set(eng.IdentifyRequest(base).Group)
	// Addresses are checked unless the name is on the group's allow list.
	checkIPs := eng.HasIPRules() && eng.Decide(qr.request(name)).Reason != policy.ReasonGroupAllow
	results := make(chan result, 2)
	for _, qt := range []uint16{mdns.TypeA, mdns.TypeAAAA} {
		go func() {
			a, err := s.lookupType(eng, base, set, name, qt, checkIPs)
			results <- result{a, err}
		}()
	}
	var addrs []netip.Addr
	var errs []error
	for range 2 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case r := <-results:
			if errors.Is(r.err, ErrBlocked) {
				return nil, r.err
			}
			addrs = append(addrs, r.addrs...)
			if r.err != nil {
				errs = append(errs, r.err)
			}
		}
	}
	if len(addrs) == 0 {
		if err := errors.Join(errs...); err != nil {
			return nil, fmt.Errorf("resolving %s: %w", name, err)
		}
		return nil, fmt.Errorf("resolving %s: no addresses", name)
	}
	return addrs, nil
}

// lookupType answers one question from the cache or the upstreams of set,
// deciding CNAME targets (and, with checkIPs, addresses) with eng for
// the client of base (its identity).
func (s *Server) lookupType(eng *policy.Engine, base policy.Request, set uint8, name string, qt uint16, checkIPs bool) ([]netip.Addr, error) {
	now := s.opts.Now()
	e, err := s.freshOrResolve(cacheKey{name: name, qtype: qt, edns: true, ups: set}, now.UnixNano(), nil)
	if err != nil {
		return nil, err
	}
	r := base
	r.Time = now
	for _, t := range e.targets() {
		r.Host = t
		if d := eng.Decide(r); d.Action == policy.Block {
			if d.Entry == "" && !d.Restricted {
				d.Entry = t
			}
			return nil, &policy.BlockedError{Name: name, Target: t, Decision: d}
		}
	}
	r.Host = ""
	m := new(mdns.Msg)
	if err := m.Unpack(e.wire); err != nil {
		return nil, err
	}
	if m.Rcode != mdns.RcodeSuccess {
		return nil, fmt.Errorf("%s: %s", name, mdns.RcodeToString[m.Rcode])
	}
	var out []netip.Addr
	for _, rr := range m.Answer {
		switch v := rr.(type) {
		case *mdns.A:
			if a, ok := netip.AddrFromSlice(v.A.To4()); ok {
				out = append(out, a)
			}
		case *mdns.AAAA:
			if a, ok := netip.AddrFromSlice(v.AAAA.To16()); ok {
				out = append(out, a)
			}
		}
	}
	if checkIPs {
		if d, i, _ := eng.DecideAddrs(r, out); i >= 0 {
			return nil, &policy.BlockedError{Name: name, Addr: out[i].Unmap(), Decision: d}
		}
	}
	return out, nil
}
