package dns

import (
	"net"

	mdns "github.com/miekg/dns"

	"github.com/gatehouse-filter/gatehouse/policy"
)

// blockAnswer fills resp (a reply to q) for a blocked name, per the
// configured block response: NXDOMAIN with SOA, the null address, or the
// block page's address. Other query types get NODATA with SOA. The TTL is
// short so schedules and unblocks take effect quickly.
func (s *Server) blockAnswer(resp *mdns.Msg, q mdns.Question, forceNX bool) {
	ttl := uint32(s.opts.BlockTTL.Seconds())
	hdr := mdns.RR_Header{Name: q.Name, Class: mdns.ClassINET, Ttl: ttl}
	mode := s.opts.BlockResponse
	if forceNX {
		mode = BlockNXDomain
	}
	switch mode {
	case BlockNull, BlockBlockPage:
		var v4, v6 net.IP = net.IPv4zero, net.IPv6zero
		if mode == BlockBlockPage && s.opts.BlockPageIP.IsValid() {
			if ip := s.opts.BlockPageIP; ip.Is4() {
				v4, v6 = ip.AsSlice(), nil
			} else {
				v4, v6 = nil, ip.AsSlice()
			}
		}
		switch {
		case q.Qtype == mdns.TypeA && v4 != nil:
			hdr.Rrtype = mdns.TypeA
			resp.Answer = append(resp.Answer, &mdns.A{Hdr: hdr, A: v4})
			return
		case q.Qtype == mdns.TypeAAAA && v6 != nil:
			hdr.Rrtype = mdns.TypeAAAA
			resp.Answer = append(resp.Answer, &mdns.AAAA{Hdr: hdr, AAAA: v6})
			return
		}
		resp.Ns = append(resp.Ns, s.soa(q.Name)) // NODATA
	default:
		resp.Rcode = mdns.RcodeNameError
		resp.Ns = append(resp.Ns, s.soa(q.Name))
	}
}

// soa is the synthetic SOA of a blocked or special name; its minimum is
// the block TTL (the negative-caching time).
func (s *Server) soa(name string) mdns.RR {
	ttl := uint32(s.opts.BlockTTL.Seconds())
	return &mdns.SOA{Hdr: mdns.RR_Header{Name: name, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: ttl},
		Ns: "gatehouse.invalid.", Mbox: "hostmaster.gatehouse.invalid.", Serial: 1, Refresh: 3600, Retry: 600,
		Expire: 86400, Minttl: ttl}
}

// ede returns the Extended DNS Error for a blocking decision: 16
// "Censored" for the restricted tier (no detail), else 15 "Blocked" with
// the category.
func ede(d *policy.Decision) *mdns.EDNS0_EDE {
	if d.Restricted {
		return &mdns.EDNS0_EDE{InfoCode: mdns.ExtendedErrorCodeCensored}
	}
	e := &mdns.EDNS0_EDE{InfoCode: mdns.ExtendedErrorCodeBlocked}
	if d.HasCategory {
		e.ExtraText = "gatehouse: " + d.Category.String()
	}
	return e
}

// blockReply answers a blocked name. Block answers are packed once per
// name, type, EDNS shape and reason and then served like cached answers,
// so a blocked share in the traffic costs about what a cache hit does.
func (s *Server) blockReply(qr *query, d *policy.Decision, forceNX bool) {
	k := s.key(qr, qr.name, qr.q.Qtype)
	k.block = 1
	if d.HasCategory {
		k.block |= uint32(d.Category+1) << 8
	}
	if d.Restricted {
		k.block |= 2
	}
	if forceNX {
		k.block |= 4
	}
	now := qr.now.UnixNano()
	if qr.q.Qclass == mdns.ClassINET && qr.name != "" {
		e := s.blocks.get(k, now)
		if e == nil || now >= e.expires {
			e = s.packBlock(qr, d, k, forceNX, now)
		}
		if e != nil {
			s.answer(qr, e, false)
			return
		}
	}
	resp := s.reply(qr)
	s.blockAnswer(resp, qr.q, forceNX)
	s.write(qr, resp, ede(d))
}

func (s *Server) packBlock(qr *query, d *policy.Decision, k cacheKey, forceNX bool, now int64) *entry {
	q := mdns.Question{Name: qr.name + ".", Qtype: qr.q.Qtype, Qclass: mdns.ClassINET}
	m := &mdns.Msg{Compress: true}
	m.Response, m.RecursionAvailable, m.RecursionDesired = true, true, true
	m.Question = []mdns.Question{q}
	s.blockAnswer(m, q, forceNX)
	if k.edns {
		o := &mdns.OPT{Hdr: mdns.RR_Header{Name: ".", Rrtype: mdns.TypeOPT}}
		o.SetUDPSize(EDNSSize)
		if k.do {
			o.SetDo()
		}
		o.Option = append(o.Option, ede(d))
		m.Extra = append(m.Extra, o)
	}
	ttl := uint32(s.opts.BlockTTL.Seconds())
	e, err := newEntry(m, ttl, nil, now)
	if err != nil {
		return nil
	}
	s.blocks.put(k, e)
	return e
}
