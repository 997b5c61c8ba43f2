package dns

import (
	"encoding/binary"
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

// blockReply answers a blocked name once the event numbered seq is durable
// (sendAfter; 0: at once). The sections after the question
// depend only on the query type, the client's EDNS shape and the reason,
// so they are packed once into a template (owner names point at the
// question); an answer is the header, the question as asked, and the
// template: no per-name state, so a blocked share in the traffic costs
// about what a cache hit does and block answers take no memory.
func (s *Server) blockReply(qr *query, d *policy.Decision, forceNX bool, seq uint64) {
	if qr.q.Qclass == mdns.ClassINET && qr.name != "" {
		if t := s.blockTemplate(qr, d, forceNX); t != nil {
			bp := s.bufs.Get().(*[]byte)
			b, ok := t.render((*bp)[:0], qr.r, qr.q)
			if ok && (qr.proto != "udp" || len(b) <= udpSize(qr.opt)) {
				*bp = b
				s.sendAfter(qr, b, seq)
				s.bufs.Put(bp)
				return
			}
			s.bufs.Put(bp)
		}
	}
	resp := s.reply(qr)
	s.blockAnswer(resp, qr.q, forceNX)
	s.finishMsg(qr, resp, ede(d))
	b, err := resp.Pack()
	if err != nil {
		return
	}
	s.sendAfter(qr, b, seq)
}

// blockTmpl is a packed block answer without header and question.
type blockTmpl struct {
	rcode      byte
	an, ns, ar uint16
	tail       []byte // RRs; owner names are a pointer to the question (0xC00C)
}

// blockTemplates maps a template key to its template; copied on write
// (there are only a few dozen keys).
type blockTemplates = map[uint64]*blockTmpl

func (s *Server) blockTemplate(qr *query, d *policy.Decision, forceNX bool) *blockTmpl {
	var k uint64
	switch qr.q.Qtype {
	case mdns.TypeA:
		k = 1
	case mdns.TypeAAAA:
		k = 2
	}
	if qr.opt != nil {
		k |= 4
		if qr.opt.Do() {
			k |= 8
		}
	}
	if d.Restricted {
		k |= 16
	}
	if forceNX {
		k |= 32
	}
	if d.HasCategory {
		k |= 64 | uint64(d.Category)<<8
	}
	if m := s.blockTmpls.Load(); m != nil {
		if t := (*m)[k]; t != nil {
			return t
		}
	}
	t := s.packBlockTemplate(qr.q.Qtype, qr.opt != nil, qr.opt != nil && qr.opt.Do(), d, forceNX)
	if t == nil {
		return nil
	}
	s.blockTmplMu.Lock()
	defer s.blockTmplMu.Unlock()
	next := blockTemplates{}
	if m := s.blockTmpls.Load(); m != nil {
		if len(*m) >= 4096 {
			return t // unbounded category numbers cannot grow this for ever
		}
		for k2, v := range *m {
			next[k2] = v
		}
	}
	next[k] = t
	s.blockTmpls.Store(&next)
	return t
}

// packBlockTemplate packs the sections of a block answer for qtype.
func (s *Server) packBlockTemplate(qtype uint16, edns, do bool, d *policy.Decision, forceNX bool) *blockTmpl {
	m := new(mdns.Msg)
	s.blockAnswer(m, mdns.Question{Name: ".", Qtype: qtype, Qclass: mdns.ClassINET}, forceNX)
	t := &blockTmpl{rcode: byte(m.Rcode), an: uint16(len(m.Answer)), ns: uint16(len(m.Ns))}
	buf := make([]byte, 512)
	for _, rr := range append(m.Answer, m.Ns...) {
		off, err := mdns.PackRR(rr, buf, 0, nil, false)
		if err != nil || off < 1 || buf[0] != 0 {
			return nil
		}
		// The owner is the root (one zero byte): point it at the question.
		t.tail = append(t.tail, 0xC0, 0x0C)
		t.tail = append(t.tail, buf[1:off]...)
	}
	if edns {
		o := &mdns.OPT{Hdr: mdns.RR_Header{Name: ".", Rrtype: mdns.TypeOPT}}
		o.SetUDPSize(EDNSSize)
		if do {
			o.SetDo()
		}
		o.Option = append(o.Option, ede(d))
		off, err := mdns.PackRR(o, buf, 0, nil, false)
		if err != nil {
			return nil
		}
		t.tail = append(t.tail, buf[:off]...)
		t.ar = 1
	}
	return t
}

// render writes the block answer to r's question q into dst.
func (t *blockTmpl) render(dst []byte, r *mdns.Msg, q mdns.Question) ([]byte, bool) {
	var h [12]byte
	binary.BigEndian.PutUint16(h[0:], r.Id)
	h[2] = 0x80 // QR, opcode QUERY
	if r.RecursionDesired {
		h[2] |= 0x01
	}
	h[3] = 0x80 | t.rcode // RA
	if r.CheckingDisabled {
		h[3] |= 0x10
	}
	binary.BigEndian.PutUint16(h[4:], 1)
	binary.BigEndian.PutUint16(h[6:], t.an)
	binary.BigEndian.PutUint16(h[8:], t.ns)
	binary.BigEndian.PutUint16(h[10:], t.ar)
	dst = append(dst, h[:]...)
	dst, ok := appendName(dst, q.Name)
	if !ok {
		return nil, false
	}
	dst = binary.BigEndian.AppendUint16(dst, q.Qtype)
	dst = binary.BigEndian.AppendUint16(dst, q.Qclass)
	return append(dst, t.tail...), true
}

// appendName appends the uncompressed wire form of the presentation name
// n (as asked, case kept). Escaped names are left to miekg/dns (false).
func appendName(dst []byte, n string) ([]byte, bool) {
	if n == "." {
		return append(dst, 0), true
	}
	if len(n) == 0 || len(n) > 254 || n[len(n)-1] != '.' {
		return nil, false
	}
	start := 0
	for i := 0; i < len(n); i++ {
		switch n[i] {
		case '\\':
			return nil, false
		case '.':
			l := i - start
			if l == 0 || l > 63 {
				return nil, false
			}
			dst = append(dst, byte(l))
			dst = append(dst, n[start:i]...)
			start = i + 1
		}
	}
	return append(dst, 0), true
}
