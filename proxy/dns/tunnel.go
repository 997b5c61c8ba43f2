package dns

import (
	"hash/maphash"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/publicsuffix"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/policy"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// A VPN over DNS (iodine, dnscat2 and the "DNS tunnel" apps built on them)
// puts its data in the names it asks for under its own domain, whose
// authoritative server is the tunnel's far end: every such name is on no
// list, so it would be allowed and forwarded. The detection, per client
// and registrable domain (eTLD+1):
//
//   - a name is tunnel-like when the part left of its registrable domain
//     (dots included) is at least tunnelPrefixLen characters or has a label
//     of at least tunnelLabelLen, or its type is NULL or private-use
//     (65280–65534) and it has any subdomain;
//   - only names the policy allows count, never well-formed reverse
//     lookups (reverseName: nibbles under ip6.arpa, octets under
//     in-addr.arpa; other names under .arpa count), the built-in allow
//     list (config/hosts/dns_tunnel_allow.txt) or dns.tunnel.allow;
//   - threshold distinct such names (64-bit hashes) within window of the
//     first is a tunnel: one event, a bypass attempt in the vpn category
//     with reason dns-tunnel, named by the registrable domain; with action
//     block, that client's queries under the domain get the block answer
//     for BlockFor.
//
// Memory: at most tunnelMaxClients clients × tunnelMaxDomains domains, each
// holding at most threshold hashes. At the client cap, clients with no
// window open and no block are swept (at most once a second); if none can
// go, a new client is not tracked (gatehouse_dns_tunnel_untracked_total).
// At a client's domain cap, a domain whose window has ended is replaced,
// else the one with the fewest names counted. State is in memory only: a
// restart forgets a tunnel being counted and the blocks in force.

// Tunnel actions (TunnelOptions.Action).
const (
	TunnelBlock = config.TunnelBlock
	TunnelFlag  = config.TunnelFlag
	TunnelOff   = config.TunnelOff
)

// TunnelOptions configures the DNS tunnel detection (tunnel.go).
type TunnelOptions struct {
	Action    string        // block (default), flag or off
	Threshold int           // distinct tunnel-like names; default 30
	Window    time.Duration // default 1 min
	BlockFor  time.Duration // default 1 h
	// Allow adds domains (each covering its subdomains) never counted to
	// the built-in list.
	Allow []string
}

// Tunnel-like names and the bounds of the detection state.
const (
	tunnelPrefixLen  = 48 // the part left of the registrable domain, dots included
	tunnelLabelLen   = 40 // any single label
	tunnelMaxClients = 4096
	tunnelMaxDomains = 16
	// tunnelMaxBlocks bounds the blocks in force (about 64 bytes each;
	// each detection copies them, so the bound also bounds its cost):
	// past it, the one that ends first makes room.
	tunnelMaxBlocks = 4096
	// tunnelMinName is the shortest name the length rule can match: a
	// 40-character label, a dot and a registrable domain of at least
	// three ("a.b"). Shorter names skip the check after one comparison.
	tunnelMinName = tunnelLabelLen + 1 + 3
	// tunnelReason is the event's reason.
	tunnelReason = "dns-tunnel"
)

type tunnels struct {
	action    string
	off       bool // action off: nothing is counted
	threshold int
	window    int64 // nanoseconds
	blockFor  int64
	allow     config.HostSet // never counted: the built-in list and Allow
	seed      maphash.Seed

	mu        sync.Mutex
	clients   map[netip.Addr]*tunClient
	lastSweep int64

	// blocks is the active blocks, copied on write (detections are rare);
	// nil when there are none, so a query pays one atomic load.
	blocks     atomic.Pointer[map[netip.Addr][]tunBlock]
	nextExpiry atomic.Int64 // the earliest until in blocks
	nblocks    atomic.Int64

	detections prometheus.Counter
	untracked  prometheus.Counter
}

type tunClient struct {
	doms []tunDomain
}

// tunDomain counts one client's tunnel-like names under one registrable
// domain in the window that started with the first.
type tunDomain struct {
	reg     string
	start   int64
	hashes  []uint64 // distinct names, at most threshold
	flagged bool     // action flag: reported in this window, not counted again
}

type tunBlock struct {
	reg   string
	until int64
}

func newTunnels(o TunnelOptions, reg prometheus.Registerer) *tunnels {
	t := &tunnels{action: o.Action, threshold: o.Threshold, window: int64(o.Window), blockFor: int64(o.BlockFor),
		allow: config.NewHostSet(config.BuiltinTunnelAllow(), o.Allow), seed: maphash.MakeSeed(), clients: map[netip.Addr]*tunClient{}}
	if t.action == "" {
		t.action = TunnelBlock
	}
	t.off = t.action == TunnelOff
	if t.threshold <= 0 {
		t.threshold = config.DefaultTunnelThreshold
	}
	t.threshold = min(t.threshold, config.MaxTunnelThreshold)
	if t.window <= 0 {
		t.window = int64(config.DefaultTunnelWindow)
	}
	if t.blockFor <= 0 {
		t.blockFor = int64(config.DefaultTunnelBlockFor)
	}
	t.detections = prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_dns_tunnel_detections_total",
		Help: "DNS tunnels detected (a client asking for many distinct tunnel-like names under one domain)."})
	t.untracked = prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_dns_tunnel_untracked_total",
		Help: "Tunnel-like names not counted because the detection already tracked its maximum of clients."})
	if reg != nil {
		reg.MustRegister(t.detections, t.untracked,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "gatehouse_dns_tunnel_blocks_active",
				Help: "Clients' registrable domains answered with the block answer after a DNS tunnel was detected."},
				func() float64 { return float64(t.nblocks.Load()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "gatehouse_dns_tunnel_clients",
				Help: "Clients whose tunnel-like names are being counted (at most 4096)."},
				func() float64 { t.mu.Lock(); defer t.mu.Unlock(); return float64(len(t.clients)) }))
	}
	return t
}

// blocked returns the registrable domain of an active block of client that
// name is under. With no block active it costs one atomic load.
func (t *tunnels) blocked(client netip.Addr, name string, now int64) (string, bool) {
	m := t.blocks.Load()
	if m == nil {
		return "", false
	}
	if now >= t.nextExpiry.Load() {
		t.expire(now)
		if m = t.blocks.Load(); m == nil {
			return "", false
		}
	}
	for _, b := range (*m)[client] {
		if now < b.until && under(name, b.reg) {
			return b.reg, true
		}
	}
	return "", false
}

// under reports whether name is domain or a subdomain of it.
func under(name, domain string) bool {
	return len(name) >= len(domain) && name[len(name)-len(domain):] == domain &&
		(len(name) == len(domain) || name[len(name)-len(domain)-1] == '.')
}

// tunnelLike returns the registrable domain of name when a query for it
// of type qtype is tunnel-like and not allowed ("" otherwise). Names
// shorter than tunnelMinName of ordinary types return after one test.
func (t *tunnels) tunnelLike(name string, qtype uint16) string {
	odd := oddType(qtype)
	if !odd {
		if len(name) < tunnelMinName {
			return ""
		}
		// The registrable domain has two labels or more, so the part left
		// of it is at most the name without its last two: too short for
		// the rule without asking the public suffix list.
		i := strings.LastIndexByte(name, '.')
		if i < 0 {
			return ""
		}
		j := strings.LastIndexByte(name[:i], '.')
		if j < 0 || (j+1 < tunnelPrefixLen && !hasLongLabel(name[:j])) {
			return ""
		}
	}
	if reverseName(name) || t.allow.Has(name) {
		return "" // reverse lookups (ip6.arpa names are always long); allowed
	}
	// (A long name costs one 48-byte allocation here: the public suffix
	// lookup first tries the name as an IP address.)
	reg, err := publicsuffix.EffectiveTLDPlusOne(name)
	if err != nil || len(reg) >= len(name) {
		return "" // no subdomain
	}
	prefix := name[:len(name)-len(reg)] // with the dot before reg
	if !odd && len(prefix) < tunnelPrefixLen && !hasLongLabel(prefix) {
		return ""
	}
	return reg
}

// reverseName reports whether name is a well-formed reverse lookup, never
// counted: under ip6.arpa at most 32 labels of one hex digit each; under
// in-addr.arpa at most 4 decimal octets (0-255), where the fourth may be
// an RFC 2317 classless delegation label ("0/25", "0-127") with the host's
// octet left of it; either with a DNS-SD browsing-domain prefix (RFC 6763
// section 11: "b._dns-sd._udp." and the like, which Apple devices ask with
// their network's reverse name). Anything else under .arpa counts as any
// other name: a delegated reverse zone (a tunnel broker's /48 comes with
// its ip6.arpa zone) is a domain like any other, and can carry a tunnel.
func reverseName(name string) bool {
	if !under(name, "arpa") {
		return false
	}
	if i := strings.IndexByte(name, '.'); i > 0 && i <= 2 && strings.HasPrefix(name[i:], "._dns-sd._udp.") {
		switch name[:i] {
		case "b", "db", "r", "dr", "lb":
			name = name[i+len("._dns-sd._udp."):]
		}
	}
	switch {
	case under(name, "ip6.arpa"):
		p := name[:len(name)-len("ip6.arpa")] // "" or ending in a dot
		if len(p)%2 != 0 || len(p) > 64 {
			return false
		}
		for ; len(p) >= 2; p = p[2:] {
			if c := p[0]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') || p[1] != '.' {
				return false
			}
		}
		return true
	case under(name, "in-addr.arpa"):
		p := name[:len(name)-len("in-addr.arpa")]
		for n, classless := 1, false; p != ""; n++ {
			p = p[:len(p)-1] // the dot
			i := strings.LastIndexByte(p, '.')
			l := p[i+1:]
			p = p[:i+1]
			switch {
			case n == 4 && classlessLabel(l):
				classless = true
			case !isOctet(l) || n > 5 || (n == 5 && !classless):
				return false
			}
		}
		return true
	}
	return false
}

// isOctet: a decimal 0-255 without leading zeros.
func isOctet(s string) bool {
	if len(s) == 0 || len(s) > 3 || (s[0] == '0' && len(s) > 1) {
		return false
	}
	v := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
		v = v*10 + int(s[i]-'0')
	}
	return v <= 255
}

// classlessLabel: an RFC 2317 label, two octets joined by "/" (address and
// prefix length) or "-" (first and last address).
func classlessLabel(s string) bool {
	i := strings.IndexAny(s, "/-")
	return i > 0 && isOctet(s[:i]) && isOctet(s[i+1:])
}

func hasLongLabel(s string) bool {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			n = 0
			continue
		}
		if n++; n >= tunnelLabelLen {
			return true
		}
	}
	return false
}

// observe counts a tunnel-like name of client under reg; it reports
// whether that makes a tunnel (once per window: the domain's count starts
// again), and with action block starts the block.
func (t *tunnels) observe(client netip.Addr, name, reg string, now int64) bool {
	h := maphash.String(t.seed, name)
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.clients[client]
	if c == nil {
		if len(t.clients) >= tunnelMaxClients && !t.sweepLocked(now) {
			t.untracked.Inc()
			return false
		}
		c = &tunClient{}
		t.clients[client] = c
	}
	d := c.domain(reg, now, t.window)
	if now-d.start >= t.window {
		d.start, d.hashes, d.flagged = now, d.hashes[:0], false
	}
	if d.flagged {
		return false
	}
	for _, x := range d.hashes {
		if x == h {
			return false // asked before in this window
		}
	}
	if d.hashes == nil {
		d.hashes = make([]uint64, 0, t.threshold)
	}
	d.hashes = append(d.hashes, h)
	if len(d.hashes) < t.threshold {
		return false
	}
	t.detections.Inc()
	if t.action != TunnelBlock {
		d.hashes, d.flagged = d.hashes[:0], true
		return true
	}
	// The block takes over; counting starts afresh when it ends.
	reg = d.reg
	c.remove(d)
	if len(c.doms) == 0 {
		delete(t.clients, client)
	}
	t.addBlockLocked(client, reg, now+t.blockFor, now)
	return true
}

// domain returns c's entry for reg, making one (replacing an ended or the
// smallest at the cap).
func (c *tunClient) domain(reg string, now, window int64) *tunDomain {
	for i := range c.doms {
		if c.doms[i].reg == reg {
			return &c.doms[i]
		}
	}
	if len(c.doms) < tunnelMaxDomains {
		c.doms = append(c.doms, tunDomain{reg: strings.Clone(reg), start: now})
		return &c.doms[len(c.doms)-1]
	}
	victim := 0
	for i := range c.doms {
		if now-c.doms[i].start >= window {
			victim = i
			break
		}
		if len(c.doms[i].hashes) < len(c.doms[victim].hashes) {
			victim = i
		}
	}
	d := &c.doms[victim]
	d.reg, d.start, d.hashes, d.flagged = strings.Clone(reg), now, d.hashes[:0], false
	return d
}

func (c *tunClient) remove(d *tunDomain) {
	for i := range c.doms {
		if &c.doms[i] == d {
			c.doms = append(c.doms[:i], c.doms[i+1:]...)
			return
		}
	}
}

// sweepLocked drops the clients with no window open, at most once a
// second; it reports whether there is room for a new client (t.mu held).
func (t *tunnels) sweepLocked(now int64) bool {
	if now-t.lastSweep < int64(time.Second) {
		return false
	}
	t.lastSweep = now
	for a, c := range t.clients {
		open := false
		for i := range c.doms {
			if now-c.doms[i].start < t.window {
				open = true
				break
			}
		}
		if !open {
			delete(t.clients, a)
		}
	}
	return len(t.clients) < tunnelMaxClients
}

// addBlockLocked adds client's block of reg until `until`, dropping the
// blocks that have ended (t.mu held).
func (t *tunnels) addBlockLocked(client netip.Addr, reg string, until, now int64) {
	next := t.liveBlocks(now)
	if next == nil {
		next = map[netip.Addr][]tunBlock{}
	}
	if t.nblocks.Load() >= tunnelMaxBlocks {
		dropEarliest(next) // a flood of detections from ever new addresses
	}
	next[client] = append(next[client], tunBlock{reg: reg, until: until})
	t.publishLocked(next)
}

// dropEarliest removes the block of m that ends first.
func dropEarliest(m map[netip.Addr][]tunBlock) {
	var at netip.Addr
	i, first := -1, int64(1<<63-1)
	for a, bs := range m {
		for j, b := range bs {
			if b.until < first {
				at, i, first = a, j, b.until
			}
		}
	}
	if i < 0 {
		return
	}
	bs := append(m[at][:i:i], m[at][i+1:]...)
	if len(bs) == 0 {
		delete(m, at)
	} else {
		m[at] = bs
	}
}

// liveBlocks copies the blocks still in force at now (nil for none).
func (t *tunnels) liveBlocks(now int64) map[netip.Addr][]tunBlock {
	old := t.blocks.Load()
	if old == nil {
		return nil
	}
	next := make(map[netip.Addr][]tunBlock, len(*old))
	for a, bs := range *old {
		var keep []tunBlock
		for _, b := range bs {
			if now < b.until {
				keep = append(keep, b)
			}
		}
		if keep != nil {
			next[a] = keep
		}
	}
	if len(next) == 0 {
		return nil
	}
	return next
}

// publishLocked makes next the active blocks (t.mu held).
func (t *tunnels) publishLocked(next map[netip.Addr][]tunBlock) {
	var n int64
	first := int64(1<<63 - 1)
	for _, bs := range next {
		for _, b := range bs {
			n++
			first = min(first, b.until)
		}
	}
	t.nextExpiry.Store(first)
	t.nblocks.Store(n)
	if n == 0 {
		t.blocks.Store(nil)
		return
	}
	t.blocks.Store(&next)
}

// expire drops the blocks that have ended by now.
func (t *tunnels) expire(now int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now < t.nextExpiry.Load() {
		return // another query did it
	}
	t.publishLocked(t.liveBlocks(now))
}

// mayApply reports whether tunnelCheck could do anything for a name of
// qtype: a block is in force, or the name is long or of an odd type. Small
// enough to inline, so that most queries pay one atomic load and a length
// test, no call.
func (t *tunnels) mayApply(name string, qtype uint16) bool {
	return t.blocks.Load() != nil || (!t.off && (len(name) >= tunnelMinName || oddType(qtype)))
}

// oddType: NULL and the private-use types, tunnel-like with any subdomain.
func oddType(qtype uint16) bool { return qtype == 10 || (qtype >= 65280 && qtype <= 65534) }

// tunnelCheck runs the detection for a query the policy allowed: a block
// in force answers it with the block answer; a tunnel-like name is counted,
// and the one that makes a tunnel records the event (and, with action
// block, is blocked itself). It reports whether it answered qr.
func (s *Server) tunnelCheck(qr *query, d *policy.Decision, qt string) bool {
	t := s.tunnel
	now := qr.now.UnixNano()
	if reg, ok := t.blocked(qr.client, qr.name, now); ok {
		s.tunnelBlock(qr, d, qt, reg, "block")
		return true
	}
	if t.off {
		return false
	}
	reg := t.tunnelLike(qr.name, qr.q.Qtype)
	if reg == "" || !t.observe(qr.client, qr.name, reg, now) {
		return false
	}
	if t.action == TunnelFlag {
		td := s.tunnelDecision(qr, d, reg)
		s.events.record(s.tunnelEvent(qr, &td, reg, "flag"))
		return false
	}
	s.tunnelBlock(qr, d, qt, reg, "block")
	return true
}

// tunnelDecision is d turned into a VPN block by the tunnel detection: a
// bypass attempt at the vpn category's severity and report route.
func (s *Server) tunnelDecision(qr *query, d *policy.Decision, reg string) policy.Decision {
	td := *d
	td.Action, td.Category, td.HasCategory = policy.Block, bl.VPN, true
	td.Severity, td.Route = qr.eng.Severity(bl.VPN), qr.eng.Route(bl.VPN)
	td.Bypass, td.Restricted, td.Probe = true, false, false
	td.List, td.Entry = "", reg
	return td
}

// tunnelEvent is the event of a DNS tunnel of qr's client through reg:
// named by the registrable domain, with no query type, so that the
// detection and the blocks after it are one kind and collapse (events.go).
func (s *Server) tunnelEvent(qr *query, d *policy.Decision, reg, action string) reports.Event {
	ev := s.event(qr, d, action)
	ev.Name, ev.Entry, ev.QType, ev.Reason = reg, reg, "", tunnelReason
	return ev
}

// tunnelBlock answers qr with the group's block answer through the normal
// block path (its event collapsed with the detection's).
func (s *Server) tunnelBlock(qr *query, d *policy.Decision, qt, reg, action string) {
	td := s.tunnelDecision(qr, d, reg)
	seq := s.events.record(s.tunnelEvent(qr, &td, reg, action))
	s.blockReply(qr, &td, false, seq)
	s.count(qt, "blocked", td.Group)
}
