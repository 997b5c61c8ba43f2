package dns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/devices"
	"github.com/gatehouse-filter/gatehouse/identity"
	"github.com/gatehouse-filter/gatehouse/policy"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// Request flow (one function per step, in this order):
//
//	checks (opcode, one question) → ACL → rate limit → identity + policy
//	→ bypass (DDR, canary, Private Relay, DoH) → DNS tunnel → block → safe-search rewrite
//	→ cache / upstream (CNAME chain checked, ECH stripped) → reply.

// query is the per-request state.
type query struct {
	w      mdns.ResponseWriter
	r      *mdns.Msg
	q      mdns.Question
	name   string // lower case, no trailing dot ("" for the root)
	client netip.Addr
	proto  string
	opt    *mdns.OPT
	now    time.Time
	ups    uint8           // the client group's upstream set
	eng    *policy.Engine  // the engine deciding this query (one per query, even across a reload)
	user   string          // the user logged in from client, if known
	who    *identity.Entry // what the identity table knows of client (nil: nothing)
	dev    *devices.Device // the enrolled device of an off-site DoH/DoT query (remote.go); nil: on-site

	waiting bool // holds a slot to wait on an upstream (startWait)
	noH3    bool // an HTTPS query for a name the client's group decrypts: answered without h3
	// targets is the categories of the answer's CNAME targets that a
	// schedule of the client's group blocks at other times (answerBlocked;
	// the name's own are the decision's): see scheduleCap.
	targets bl.CategorySet
}

// protoHandler is the miekg/dns handler of one listener kind: tcp, dot,
// and udp where miekg's server reads the socket (see udp.go).
type protoHandler struct {
	s     *Server
	proto string
}

func (h protoHandler) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	h.s.serve(&trackedWriter{ResponseWriter: w}, r, h.proto, nil)
}

// serve answers r. dev is the enrolled device of an off-site query, whose
// token the remote listener checked (remote.go): the token is its access
// control, in place of clients.allow, and it names the device and its group.
func (s *Server) serve(w mdns.ResponseWriter, r *mdns.Msg, proto string, dev *devices.Device) {
	s.inflight.Add(1)
	qr := query{w: w, r: r, proto: proto, client: remoteAddr(w), dev: dev}
	defer s.finish(&qr) // recovers a panic: it costs only this query
	if r.Response {
		return // never answer answers
	}
	qr.now = s.opts.Now()
	if r.Opcode != mdns.OpcodeQuery {
		s.rcode(&qr, mdns.RcodeNotImplemented, "other", "notimp", "")
		return
	}
	if len(r.Question) != 1 {
		s.rcode(&qr, mdns.RcodeFormatError, "other", "formerr", "")
		return
	}
	qr.q = r.Question[0]
	qr.opt = r.IsEdns0()
	qt := qtypeLabel(qr.q.Qtype)
	if dev == nil {
		ac := s.access.Load()
		if !ac.acl.allowed(qr.client) {
			s.rcode(&qr, mdns.RcodeRefused, qt, "refused", "")
			return
		}
		if !ac.rl.allow(qr.client, qr.now) {
			s.metrics.rateLimited.Inc()
			s.rcode(&qr, mdns.RcodeRefused, qt, "ratelimited", "")
			return
		}
	}
	qr.name = normName(qr.q.Name)
	if s.isTokenName(qr.name) {
		s.serveTokenName(&qr, dev)
		return
	}
	qr.eng = s.opts.Engine()
	s.identify(&qr)
	if dev != nil && qr.who == nil && !qr.eng.HasGroup(dev.Group) {
		// The device's group is gone from the config (renamed or removed
		// at a reload): the address's network or the default group would
		// decide instead, perhaps a looser one. Refused until re-enrolled.
		s.remote.groupGone(proto, dev, qr.now)
		s.rcode(&qr, mdns.RcodeRefused, qt, "refused", "")
		return
	}
	var d policy.Decision
	if qr.name != "" { // every class: an upstream may answer class ANY with IN data
		d = qr.eng.Decide(qr.request(qr.name))
	} else {
		d.Identity = qr.eng.IdentifyRequest(qr.request(""))
	}

	switch classifyBypass(qr.name, &d) {
	case bypassDDR:
		s.metrics.probes.WithLabelValues("ddr").Inc()
		resp := s.reply(&qr)
		resp.Ns = append(resp.Ns, s.soa(qr.q.Name))
		s.write(&qr, resp, nil)
		s.count(qt, "probe", d.Group)
		return
	case bypassCanary:
		s.metrics.probes.WithLabelValues("canary").Inc()
		s.blockReply(&qr, &d, true, 0)
		s.count(qt, "probe", d.Group)
		return
	case bypassCapability:
		relay := d.Matched.Has(bl.PrivateRelay)
		if d.Action != policy.Block && !relay {
			break
		}
		var seq uint64
		if s.events.firstToday(qr.client, capCategory(&d), qr.now) {
			ev := s.event(&qr, &d, "block")
			ev.Bypass, ev.Severity = true, bl.SeverityLow
			ev.Reason = "bypass-capability"
			if relay {
				ev.Category = bl.PrivateRelay.String()
			}
			seq = s.events.record(ev)
		}
		if !d.HasCategory {
			d.Category, d.HasCategory = bl.PrivateRelay, true
		}
		s.blockReply(&qr, &d, relay, seq)
		s.count(qt, "blocked", d.Group)
		return
	}
	qr.ups = s.ups.Set(d.Group)
	if qr.q.Qtype == mdns.TypeHTTPS && s.opts.Decrypting != nil && s.opts.Decrypting() {
		qr.noH3 = qr.eng.Config().DecryptsAllowed(d.Group, qr.name)
	}
	if d.Action == policy.Allow && s.tunnel.mayApply(qr.name, qr.q.Qtype) && s.tunnelCheck(&qr, &d, qt) {
		return // a DNS tunnel (tunnel.go): blocked
	}
	switch d.Action {
	case policy.Block:
		s.block(&qr, &d, qt)
		return
	case policy.Rewrite:
		s.safeSearch(&qr, &d, qt)
		return
	}
	s.resolveAndAnswer(&qr, &d, qt)
}

// block records the event of a blocked name and answers it once the event
// is durable (see sendAfter).
func (s *Server) block(qr *query, d *policy.Decision, qt string) {
	seq := s.events.record(s.event(qr, d, "block"))
	s.blockReply(qr, d, false, seq)
	s.count(qt, "blocked", d.Group)
}

// resolveAndAnswer answers an allowed name from the cache or upstream.
func (s *Server) resolveAndAnswer(qr *query, d *policy.Decision, qt string) {
	key := s.key(qr, qr.name, qr.q.Qtype)
	cacheable := s.cache != nil && qr.q.Qclass == mdns.ClassINET
	now := qr.now.UnixNano()
	var stale *entry
	if cacheable {
		if e := s.cache.get(key, now); e != nil {
			if now < e.expires {
				s.metrics.cacheHits.Inc()
				if s.answerBlocked(qr, d, e, qt) {
					return
				}
				s.maybePrefetch(key, e, now)
				s.answer(qr, d, e, false)
				s.count(qt, "cached", d.Group)
				s.logQuery(qr, d)
				return
			}
			stale = e
		}
		s.metrics.cacheMisses.Inc()
	}
	e, err := s.resolveWaiting(qr, key, qr.q.Qclass, cacheable)
	if err != nil {
		if stale != nil {
			s.metrics.cacheStale.Inc()
			if s.answerBlocked(qr, d, stale, qt) {
				return
			}
			s.answer(qr, d, stale, true)
			s.count(qt, "stale", d.Group)
			return
		}
		resp := s.reply(qr)
		resp.Rcode = mdns.RcodeServerFailure
		s.write(qr, resp, &mdns.EDNS0_EDE{InfoCode: mdns.ExtendedErrorCodeNoReachableAuthority, ExtraText: "gatehouse: no upstream answered"})
		s.count(qt, "servfail", d.Group)
		return
	}
	if s.answerBlocked(qr, d, e, qt) {
		return
	}
	s.answer(qr, d, e, false)
	s.count(qt, "allowed", d.Group)
	s.logQuery(qr, d)
}

// answerBlocked checks every CNAME/DNAME target in the answer against the
// client's policy, and every A/AAAA address in it against the IP lists
// (unless the name itself is on the group's allow list); a blocked target
// or address blocks the whole answer as the name would be. An allowed
// target's scheduled categories go to qr.targets.
func (s *Server) answerBlocked(qr *query, d *policy.Decision, e *entry, qt string) bool {
	if e.chain != nil {
		for _, t := range e.targets() {
			td := qr.eng.Decide(qr.request(t))
			if td.Action == policy.Block {
				if td.Entry == "" && !td.Restricted {
					td.Entry = t
				}
				s.block(qr, &td, qt)
				return true
			}
			if td.Action == policy.Rewrite {
				s.chainRewrite(qr, d, e, t, &td, qt)
				return true
			}
			qr.targets |= td.Scheduled()
		}
	}
	if !e.addrs || !d.CheckAddrs() || e.clean.Load() == qr.eng.Gen() {
		return false
	}
	bd, ok, clean := addrsBlocked(qr.eng, qr.request(""), e)
	if ok {
		s.block(qr, &bd, qt)
		return true
	}
	if clean {
		// No list holds any of the answer's addresses: true for every
		// client until the engine changes, so the cache hits after this
		// one skip the lookups (a loaded IP list would otherwise cost
		// every answer one per address and prefix length).
		e.clean.Store(qr.eng.Gen())
	}
	return false
}

// chainRewrite answers e, an answer allowed by d whose CNAME chain
// reaches target, a name the client's group rewrites (td: safe search):
// the records up to the one pointing at target are kept, and target is
// answered as a query for it is (safeSearch): a CNAME to the safe
// endpoint and the endpoint's records. target's own records (a search
// engine's unsafe addresses, when a pupil's domain is an alias of it)
// never reach the client, whose resolver would keep them for its next
// lookup of target.
func (s *Server) chainRewrite(qr *query, d *policy.Decision, e *entry, target string, td *policy.Decision, qt string) {
	wire := e.wire
	bp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bp)
	if b, ok := e.render(*bp, qr.r.Id, qr.r.RecursionDesired, qr.r.CheckingDisabled, qr.q.Name, qr.now.UnixNano(), 0); ok {
		*bp, wire = b, b // aged TTLs
	}
	m := new(mdns.Msg)
	if err := m.Unpack(wire); err != nil {
		s.rcode(qr, mdns.RcodeServerFailure, qt, "servfail", d.Group)
		return
	}
	resp := s.reply(qr)
	owner := mdns.Fqdn(target)
	for _, rr := range m.Answer {
		resp.Answer = append(resp.Answer, rr)
		var to string
		switch v := rr.(type) {
		case *mdns.CNAME:
			to = v.Target
		case *mdns.DNAME:
			to = v.Target
		}
		if to != "" && normName(to) == target {
			owner = to
			break
		}
	}
	resp.Answer = append(resp.Answer, &mdns.CNAME{Hdr: mdns.RR_Header{Name: owner, Rrtype: mdns.TypeCNAME,
		Class: mdns.ClassINET, Ttl: uint32(s.opts.BlockTTL.Seconds())}, Target: mdns.Fqdn(td.Rewrite)})
	if qr.q.Qtype != mdns.TypeCNAME {
		if _, ok := s.safeEndpoint(qr, td.Rewrite, resp); !ok {
			resp.Answer = nil
			resp.Rcode = mdns.RcodeServerFailure
			s.write(qr, resp, &mdns.EDNS0_EDE{InfoCode: mdns.ExtendedErrorCodeNoReachableAuthority})
			s.count(qt, "servfail", d.Group)
			return
		}
	}
	qr.targets |= td.Scheduled()
	if maxTTL := s.scheduleCap(qr, d); maxTTL != 0 {
		resp.Answer, resp.Ns = capTTLs(resp.Answer, maxTTL), capTTLs(resp.Ns, maxTTL)
	}
	s.write(qr, resp, nil)
	s.count(qt, "rewritten", d.Group)
	if s.opts.QueryLog {
		s.events.record(s.event(qr, td, "rewrite"))
	}
}

// addrsBlocked decides the answer's addresses for the client of r, a few
// at a time without allocating: the block, whether there is one, and
// whether no list holds any of them (policy.Engine.DecideAddrs's listed).
func addrsBlocked(eng *policy.Engine, r policy.Request, e *entry) (policy.Decision, bool, bool) {
	var buf [8]netip.Addr
	clean := true
	for next := 0; ; {
		var addrs []netip.Addr
		addrs, next = e.answerAddrs(buf[:0], next)
		d, i, listed := eng.DecideAddrs(r, addrs)
		if i >= 0 {
			return d, true, false
		}
		clean = clean && !listed
		if next == 0 {
			return policy.Decision{}, false, clean
		}
	}
}

// safeSearch answers a search engine's name with a CNAME to its
// enforced-safe endpoint, resolved through the upstream.
func (s *Server) safeSearch(qr *query, d *policy.Decision, qt string) {
	target := d.Rewrite
	rb := rewriteBufs.Get().(*rewriteBuf)
	defer rb.put()
	resp := rb.start(qr)
	rb.cname = mdns.CNAME{Hdr: mdns.RR_Header{Name: qr.q.Name, Rrtype: mdns.TypeCNAME,
		Class: mdns.ClassINET, Ttl: uint32(s.opts.BlockTTL.Seconds())}}
	maxTTL := s.scheduleCap(qr, d)
	if maxTTL != 0 {
		rb.cname.Hdr.Ttl = min(rb.cname.Hdr.Ttl, maxTTL)
	}
	resp.Answer = append(resp.Answer, &rb.cname)
	if qr.q.Qtype != mdns.TypeCNAME {
		fq, ok := s.safeEndpoint(qr, target, resp)
		rb.cname.Target = fq // the cached answer's: no allocation a query
		if !ok {
			rb.cname.Target = mdns.Fqdn(target)
			resp.Rcode = mdns.RcodeServerFailure
			s.write(qr, resp, &mdns.EDNS0_EDE{InfoCode: mdns.ExtendedErrorCodeNoReachableAuthority})
			s.count(qt, "servfail", d.Group)
			return
		}
		if maxTTL != 0 { // (allocates, for a search engine's name a schedule blocks)
			resp.Answer = append(resp.Answer[:1], capTTLs(resp.Answer[1:], maxTTL)...)
			resp.Ns = capTTLs(resp.Ns, maxTTL)
		}
	}
	if rb.cname.Target == "" {
		rb.cname.Target = mdns.Fqdn(target)
	}
	s.finishMsgOPT(qr, resp, nil, &rb.opt)
	_ = qr.w.WriteMsg(resp)
	s.count(qt, "rewritten", d.Group)
	if s.opts.QueryLog {
		s.events.record(s.event(qr, d, "rewrite"))
	}
}

// safeEndpoint adds to resp what follows the CNAME to a safe-search
// endpoint, target, for qr's type: its records or, when it has none, its
// rcode and authority; and returns target fully qualified as the cached
// answer keeps it ("" if that did not unpack). ok is false when no
// upstream answered for it.
func (s *Server) safeEndpoint(qr *query, target string, resp *mdns.Msg) (fq string, ok bool) {
	e, err := s.freshOrResolve(s.key(qr, target, qr.q.Qtype), qr.now.UnixNano(), qr)
	if err != nil {
		return "", false
	}
	u := s.safeAnswers.of(e, target)
	if u == nil {
		return "", true
	}
	resp.Rcode = u.rcode
	resp.Answer = append(resp.Answer, u.answer...)
	if len(u.answer) == 0 {
		resp.Ns = u.ns
	}
	return u.target, true
}

// capTTLs returns rrs with every TTL above maxTTL lowered to it. The
// records (and rrs) may be shared with other replies (safeAnswers): one
// over is replaced by a copy, in a copy of rrs.
func capTTLs(rrs []mdns.RR, maxTTL uint32) []mdns.RR {
	cloned := false
	for i, rr := range rrs {
		if rr.Header().Ttl <= maxTTL {
			continue
		}
		if !cloned {
			rrs, cloned = slices.Clone(rrs), true
		}
		c := mdns.Copy(rr)
		c.Header().Ttl = maxTTL
		rrs[i] = c
	}
	return rrs
}

// rewriteBuf holds a safe-search reply's own parts (the message, its
// question, the CNAME and the OPT) for reuse: the rest of the answer is
// the endpoint's, shared (safeAnswers), and every ResponseWriter packs the
// message before WriteMsg returns, so nothing refers to them once it is
// written. Search engines' names are a large share of a school's queries
// (6.6% of the benchmark's mix), and building each reply anew was most of
// what a rewrite left for the collector. The reply is not compressed: it
// is a few records, and compressing allocates a map each time.
type rewriteBuf struct {
	msg    mdns.Msg
	q      [1]mdns.Question
	answer [8]mdns.RR
	extra  [1]mdns.RR
	cname  mdns.CNAME
	opt    mdns.OPT
}

var rewriteBufs = sync.Pool{New: func() any { return new(rewriteBuf) }}

// start begins the reply to qr as reply does (SetReply's fields, with
// the question in rb), but uncompressed.
func (rb *rewriteBuf) start(qr *query) *mdns.Msg {
	r := qr.r
	m := &rb.msg
	*m = mdns.Msg{MsgHdr: mdns.MsgHdr{Id: r.Id, Response: true, Opcode: r.Opcode, RecursionAvailable: true,
		Rcode: mdns.RcodeSuccess}, Answer: rb.answer[:0], Extra: rb.extra[:0]}
	if m.Opcode == mdns.OpcodeQuery {
		m.RecursionDesired, m.CheckingDisabled = r.RecursionDesired, r.CheckingDisabled
	}
	if len(r.Question) > 0 {
		rb.q[0] = r.Question[0]
		m.Question = rb.q[:]
	}
	return m
}

// put returns rb to the pool without keeping the shared parts alive.
func (rb *rewriteBuf) put() {
	clear(rb.answer[:])
	clear(rb.extra[:])
	rb.msg = mdns.Msg{}
	rb.cname = mdns.CNAME{}
	rb.opt = mdns.OPT{}
	rewriteBufs.Put(rb)
}

// safeAnswers holds the unpacked answers of the cached entries that safe
// search rewrites to (a few names, such as forcesafesearch.google.com,
// in a few shapes), so that a rewritten query does not unpack the
// endpoint's cached message again: a search engine's names are a large
// share of a school's queries, and unpacking was half of what a rewrite
// allocated. An entry is never changed once cached, so its unpacked
// answer is shared read-only by every reply built from it. At most
// safeAnswersMax entries are held; then the set starts again empty.
type safeAnswers struct {
	m atomic.Pointer[sync.Map] // *entry → *unpackedAnswer
	n atomic.Int32             // entries stored in m
}

type unpackedAnswer struct {
	rcode      int
	answer, ns []mdns.RR // capacity clipped: an append to a reply's copy reallocates
	target     string    // the rewrite's target, fully qualified
}

const safeAnswersMax = 256

// of returns e's answer unpacked, or nil when it does not unpack; e is
// the cached answer for target.
func (a *safeAnswers) of(e *entry, target string) *unpackedAnswer {
	m := a.m.Load()
	if m != nil {
		if u, ok := m.Load(e); ok {
			return u.(*unpackedAnswer)
		}
	}
	msg := new(mdns.Msg)
	if err := msg.Unpack(e.wire); err != nil {
		return nil
	}
	u := &unpackedAnswer{rcode: msg.Rcode, answer: slices.Clip(msg.Answer), ns: slices.Clip(msg.Ns), target: mdns.Fqdn(target)}
	if m == nil || a.n.Add(1) > safeAnswersMax {
		// Expired entries' answers go with the old set.
		m = new(sync.Map)
		a.m.Store(m)
		a.n.Store(1)
	}
	m.Store(e, u)
	return u
}

// freshOrResolve returns the unexpired cached entry for k (class IN), or
// resolves it; for qr, if set, since resolving may wait on an upstream
// (see startWait).
func (s *Server) freshOrResolve(k cacheKey, now int64, qr *query) (*entry, error) {
	if s.cache != nil {
		if e := s.cache.get(k, now); e != nil && now < e.expires {
			return e, nil
		}
	}
	if qr != nil {
		return s.resolveWaiting(qr, k, mdns.ClassINET, s.cache != nil)
	}
	return s.resolve(k, mdns.ClassINET, s.cache != nil)
}

// key is the cache key for name and qtype with the client's EDNS shape.
func (s *Server) key(qr *query, name string, qtype uint16) cacheKey {
	k := cacheKey{name: name, qtype: qtype, cd: qr.r.CheckingDisabled, ups: qr.ups, noH3: qr.noH3}
	if qr.opt != nil {
		k.edns, k.do = true, qr.opt.Do()
	}
	return k
}

// resolve gets the answer for k from the upstreams, one exchange for any
// number of identical concurrent queries, and caches it.
func (s *Server) resolve(k cacheKey, class uint16, cacheable bool) (*entry, error) {
	if !cacheable {
		return s.exchange(k, class, false)
	}
	return s.flight.do(k, func() (*entry, error) { return s.exchange(k, class, true) })
}

func (s *Server) exchange(k cacheKey, class uint16, store bool) (*entry, error) {
	fq := k.name + "."
	up := new(mdns.Msg)
	up.Id = mdns.Id()
	up.RecursionDesired = true
	up.CheckingDisabled = k.cd
	up.Question = []mdns.Question{{Name: fq, Qtype: k.qtype, Qclass: class}}
	up.SetEdns0(EDNSSize, k.do)
	ctx, cancel := context.WithTimeout(context.Background(), 2*s.ups.timeout)
	defer cancel()
	r, err := s.ups.Exchange(ctx, up, k.name, k.ups)
	if err != nil {
		return nil, err
	}
	m := &mdns.Msg{Compress: true}
	m.Response, m.RecursionAvailable, m.RecursionDesired = true, true, true
	m.AuthenticatedData = r.AuthenticatedData
	m.Rcode = r.Rcode
	m.Question = up.Question
	m.Answer, m.Ns = r.Answer, r.Ns
	for _, rr := range r.Extra {
		if rr.Header().Rrtype != mdns.TypeOPT {
			m.Extra = append(m.Extra, rr)
		}
	}
	stripECH(m)
	if k.noH3 {
		stripH3(m)
	}
	chain := answerNames(m, k.name)
	var ttl uint32
	if store && s.cache != nil {
		var ok bool
		if ttl, ok = s.cache.ttlFor(m); ok {
			s.cache.clampTTLs(m)
		} else {
			store = false
		}
	}
	if k.edns {
		m.SetEdns0(EDNSSize, k.do)
	}
	now := s.opts.Now().UnixNano()
	e, err := newEntry(m, ttl, chain, now)
	if err != nil {
		return nil, err
	}
	if store {
		s.cache.put(k, e)
	}
	return e, nil
}

// answerNames is every name other than the question's, qname, that m's
// answer and additional sections give records of or point at (CNAME,
// DNAME, HTTPS/SVCB targets), lower case without the dot, CNAME and DNAME
// targets first in chain order: each is decided for the client like the
// question (answerBlocked), since a device's resolver may keep any record
// the answer brings for its next lookup of that name.
func answerNames(m *mdns.Msg, qname string) []string {
	var names []string
	add := func(n string) {
		n = normName(n)
		if n != "" && n != qname && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	for _, rr := range m.Answer {
		switch v := rr.(type) {
		case *mdns.CNAME:
			add(v.Target)
		case *mdns.DNAME:
			add(v.Target)
		}
	}
	for _, sec := range [][]mdns.RR{m.Answer, m.Extra} {
		for _, rr := range sec {
			switch v := rr.(type) {
			case *mdns.HTTPS:
				add(v.Target)
			case *mdns.SVCB:
				add(v.Target)
			}
			add(rr.Header().Name)
		}
	}
	return names
}

// maybePrefetch refreshes a popular entry in the last tenth of its TTL.
func (s *Server) maybePrefetch(k cacheKey, e *entry, now int64) {
	if !s.cache.opts.Prefetch {
		return
	}
	h := e.hits.Add(1)
	if h < 3 || e.ttl < 10 {
		return
	}
	if e.expires-now > int64(e.ttl)*int64(time.Second)/10 {
		return
	}
	if !e.fetch.CompareAndSwap(false, true) {
		return
	}
	if s.waiting.Add(1) > int64(s.opts.MaxWaiting) {
		s.waiting.Add(-1) // queries first; a later hit may prefetch
		e.fetch.Store(false)
		return
	}
	s.metrics.prefetches.Inc()
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		defer s.waiting.Add(-1)
		defer func() {
			if v := recover(); v != nil {
				s.metrics.panics.Inc()
				s.opts.Log.Error("dns prefetch panicked", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			}
		}()
		_, _ = s.resolve(k, mdns.ClassINET, true)
	}()
}

// scheduleCap is the longest TTL an answer allowed by d may carry, so that
// no device keeps using it once a schedule blocks the name: the seconds
// until a schedule of the client's group next blocks one of the name's or
// its CNAME targets' categories (at least 1), or 0 when none ever does
// (max_ttl, at most 7 days, bounds it then; schedules repeat weekly).
func (s *Server) scheduleCap(qr *query, d *policy.Decision) uint32 {
	cats := d.Scheduled() | qr.targets
	if cats == 0 {
		return 0
	}
	until, ok := qr.eng.UntilScheduled(d.Group, cats, qr.now)
	if !ok {
		return 0
	}
	return uint32(max(until/time.Second, 1))
}

// answer writes a cached or fresh entry allowed by d to the client: the
// fast path copies the packed answer and patches ID, flags, question case
// and TTLs (aged, and capped at scheduleCap).
func (s *Server) answer(qr *query, d *policy.Decision, e *entry, stale bool) {
	wire := e.wire
	maxTTL := s.scheduleCap(qr, d)
	if !stale {
		bp := s.bufs.Get().(*[]byte)
		defer s.bufs.Put(bp)
		b, ok := e.render(*bp, qr.r.Id, qr.r.RecursionDesired, qr.r.CheckingDisabled, qr.q.Name, qr.now.UnixNano(), maxTTL)
		if ok {
			*bp = b
			if qr.q.Qclass == mdns.ClassINET && (qr.proto != "udp" || len(b) <= udpSize(qr.opt)) {
				_, _ = qr.w.Write(b)
				return
			}
			wire = b // the slow path keeps the aged TTLs
		}
	}
	// Slow path: truncation over UDP, a stale answer (with EDE 3), or a name
	// the fast path cannot patch.
	m := new(mdns.Msg)
	if err := m.Unpack(wire); err != nil {
		s.rcode(qr, mdns.RcodeServerFailure, qtypeLabel(qr.q.Qtype), "servfail", "")
		return
	}
	resp := s.reply(qr)
	resp.Rcode, resp.AuthenticatedData = m.Rcode, m.AuthenticatedData
	resp.Answer, resp.Ns = m.Answer, m.Ns
	var keep *mdns.EDNS0_EDE
	resp.Extra, keep = withoutOPT(resp.Extra, m.Extra)
	if stale || maxTTL != 0 {
		for _, sec := range [][]mdns.RR{resp.Answer, resp.Ns, resp.Extra} {
			for _, rr := range sec {
				if stale {
					rr.Header().Ttl = staleTTL
				}
				if maxTTL != 0 {
					rr.Header().Ttl = min(rr.Header().Ttl, maxTTL)
				}
			}
		}
	}
	if stale {
		s.write(qr, resp, &mdns.EDNS0_EDE{InfoCode: mdns.ExtendedErrorCodeStaleAnswer})
		return
	}
	s.write(qr, resp, keep)
}

// reply starts a response to qr.
func (s *Server) reply(qr *query) *mdns.Msg {
	resp := new(mdns.Msg)
	resp.SetReply(qr.r)
	resp.RecursionAvailable = true
	resp.Compress = true
	return resp
}

// write adds EDNS (and ede, if any) when the client used EDNS, truncates
// over UDP to the client's size, and sends resp.
func (s *Server) write(qr *query, resp *mdns.Msg, ede *mdns.EDNS0_EDE) {
	s.finishMsg(qr, resp, ede)
	_ = qr.w.WriteMsg(resp)
}

// finishMsg adds EDNS (and ede, if any) when the client used EDNS and
// truncates over UDP to the client's size.
func (s *Server) finishMsg(qr *query, resp *mdns.Msg, ede *mdns.EDNS0_EDE) {
	s.finishMsgOPT(qr, resp, ede, nil)
}

// finishMsgOPT is finishMsg with o, if not nil, as the OPT record to fill.
func (s *Server) finishMsgOPT(qr *query, resp *mdns.Msg, ede *mdns.EDNS0_EDE, o *mdns.OPT) {
	if qr.opt != nil {
		if o == nil {
			o = new(mdns.OPT)
		}
		*o = mdns.OPT{Hdr: mdns.RR_Header{Name: ".", Rrtype: mdns.TypeOPT}}
		o.SetUDPSize(EDNSSize)
		if qr.opt.Do() {
			o.SetDo()
		}
		if ede != nil {
			o.Option = append(o.Option, ede)
		}
		resp.Extra = append(resp.Extra, o)
	}
	if qr.proto == "udp" {
		resp.Truncate(udpSize(qr.opt))
	}
}

// sendAfter sends the packed answer b once the event numbered seq (from
// events.record) is durable: at once if it is, or seq is 0. A UDP worker
// does not wait: it leaves a copy of the answer, its address and source
// address with the writer, which sends it after the commit, and reads the
// next datagram. Other connections (TCP, DoT, miekg's UDP) wait on their
// own goroutine.
func (s *Server) sendAfter(qr *query, b []byte, seq uint64) {
	if s.events.durable(seq) {
		_, _ = qr.w.Write(b)
		return
	}
	if uw, ok := qr.w.(*udpWriter); ok {
		h := uw.hold(b)
		h.since, h.held = time.Now(), s.metrics.held
		if !s.events.dsink.AfterDurable(seq, h) {
			h.Durable()
		}
		return
	}
	since := time.Now()
	reports.WaitDurable(s.events.dsink, seq)
	_, _ = qr.w.Write(b)
	s.metrics.held.Observe(time.Since(since).Seconds())
}

// rcode answers with just an rcode.
func (s *Server) rcode(qr *query, rcode int, qt, result, group string) {
	resp := new(mdns.Msg)
	resp.SetRcode(qr.r, rcode)
	resp.RecursionAvailable = true
	if rcode == mdns.RcodeFormatError || rcode == mdns.RcodeNotImplemented {
		resp.Question = nil
	}
	_ = qr.w.WriteMsg(resp)
	s.count(qt, result, group)
}

// identify looks the client up in the identity table (Options.Identity),
// else asks Options.UserFor for a logged-in user.
func (s *Server) identify(qr *query) {
	e := s.opts.Identity.Lookup(qr.client, qr.now.UnixNano())
	if qr.dev != nil {
		// The token names the device; a home address names nobody. An
		// address the table names a person at is on site: the person is
		// named and their group decides, token or not.
		if e != nil && e.User != "" {
			qr.who, qr.user = e, e.User
		}
		return
	}
	if e != nil {
		qr.who, qr.user = e, e.User
		if e.User != "" || s.opts.UserFor == nil {
			return
		}
	}
	if s.opts.UserFor != nil {
		qr.user = s.opts.UserFor(qr.client)
	}
}

// request is the policy request for host from qr's client.
func (qr *query) request(host string) policy.Request {
	r := policy.Request{Client: qr.client, User: qr.user, Host: host, Time: qr.now}
	if qr.dev != nil {
		r.Device = qr.dev.Name
		if qr.who == nil { // on site (a person named) the token's group does not decide
			r.DeviceGroup = qr.dev.Group
		}
	}
	if qr.who != nil {
		if qr.who.Device != "" || qr.dev == nil {
			r.Device = qr.who.Device
		}
		r.MAC = qr.who.MAC // a static device listed by MAC decides as by its address
		if qr.who.User == qr.user {
			r.Group = qr.who.Group
		}
	}
	return r
}

func (s *Server) count(qt, result, group string) {
	s.metrics.query(qt, result, group).Inc()
}

// event builds the event for a decision.
func (s *Server) event(qr *query, d *policy.Decision, action string) reports.Event {
	ev := reports.Event{
		Time: qr.now.UTC(), Source: "dns", Protocol: qr.proto,
		Client: qr.client, Device: d.Device, User: d.User, Group: d.Group,
		Name: qr.name, QType: qtypeLabel(qr.q.Qtype),
		Action: action, Reason: d.Reason.String(), Severity: d.Severity, Route: d.Route,
		List: d.List, Entry: d.Entry, Restricted: d.Restricted, Bypass: d.Bypass, Probe: d.Probe, Count: 1,
	}
	if d.HasCategory {
		ev.Category = d.Category.String()
	}
	if d.Restricted {
		ev.Entry = d.EntryHash()
	}
	ev.IDSource = identity.Describe(&ev, qr.who)
	if qr.dev != nil && qr.who == nil {
		ev.IDSource = IDSourceToken
	}
	return ev
}

// logQuery records an allowed query when the full query log is on.
func (s *Server) logQuery(qr *query, d *policy.Decision) {
	if s.opts.QueryLog {
		ev := s.event(qr, d, "allow")
		ev.Severity = bl.SeverityInfo
		s.events.record(ev)
	}
}

func capCategory(d *policy.Decision) bl.Category {
	if d.Matched.Has(bl.PrivateRelay) {
		return bl.PrivateRelay
	}
	return d.Category
}

// udpSize is the largest UDP answer for a client: its EDNS size within
// 512..1232, or 512 without EDNS.
func udpSize(opt *mdns.OPT) int {
	if opt == nil {
		return mdns.MinMsgSize
	}
	return min(max(int(opt.UDPSize()), mdns.MinMsgSize), EDNSSize)
}

// normName lower-cases a query name and drops the trailing dot.
func normName(n string) string {
	n = strings.TrimSuffix(n, ".")
	for i := 0; i < len(n); i++ {
		if c := n[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(n)
		}
	}
	return n
}

func remoteAddr(w mdns.ResponseWriter) netip.Addr {
	if uw, ok := w.(*udpWriter); ok {
		return uw.peerAddr()
	}
	switch a := w.RemoteAddr().(type) {
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

func qtypeLabel(t uint16) string {
	switch t {
	case mdns.TypeA, mdns.TypeAAAA, mdns.TypeHTTPS, mdns.TypeSVCB, mdns.TypeCNAME, mdns.TypeMX, mdns.TypeTXT,
		mdns.TypePTR, mdns.TypeSRV, mdns.TypeNS, mdns.TypeSOA, mdns.TypeDS, mdns.TypeDNSKEY, mdns.TypeANY, mdns.TypeCAA:
		return mdns.TypeToString[t]
	}
	return "other"
}

// withoutOPT appends extra's records but its OPT to dst and returns the
// Extended DNS Error the OPT carried, if any: an answer relayed to a client
// gets an OPT of the client's own (write), keeping the upstream's error.
func withoutOPT(dst, extra []mdns.RR) ([]mdns.RR, *mdns.EDNS0_EDE) {
	var ede *mdns.EDNS0_EDE
	for _, rr := range extra {
		if o, ok := rr.(*mdns.OPT); ok {
			for _, op := range o.Option {
				if e, ok := op.(*mdns.EDNS0_EDE); ok {
					ede = e
				}
			}
			continue
		}
		dst = append(dst, rr)
	}
	return dst, ede
}
