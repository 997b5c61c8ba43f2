// Package policy decides, for a client and a name or URL, whether Gatehouse
// allows, blocks or rewrites the request, and why. Both front doors (DNS
// and the HTTP proxy) ask the same Engine.
//
// Decision order: restricted tier → group deny → group allow → category
// blocklists (including scheduled categories) → safe-search rewrite →
// allowed. A group allow entry lifts the blocks after it, not the
// safe-search rewrite.
package policy

import (
	"errors"
	"net/netip"
	"sync/atomic"
	"time"
	"unsafe"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/internal/username"
)

// Action is what to do with a request.
type Action uint8

const (
	Allow Action = iota
	Block
	Rewrite // answer with the safe-search endpoint
)

func (a Action) String() string {
	switch a {
	case Block:
		return "block"
	case Rewrite:
		return "rewrite"
	}
	return "allow"
}

func (a Action) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// Reason says which step of the decision order decided.
type Reason uint8

const (
	ReasonDefault    Reason = iota // nothing matched
	ReasonRestricted               // restricted tier (IWF/CTIRU)
	ReasonGroupDeny                // the group's deny list
	ReasonGroupAllow               // the group's allow list
	ReasonCategory                 // a blocked category
	ReasonSafeSearch               // safe-search rewrite (List and Entry name an allow entry for the name, if any)
	ReasonAlways                   // a category every group blocks (DNS canaries)
)

var reasonNames = [...]string{"default", "restricted", "group-deny", "group-allow", "category", "safe-search", "always"}

func (r Reason) String() string { return reasonNames[r] }

func (r Reason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// Request is one thing a client asks for.
type Request struct {
	Client netip.Addr
	User   string // authenticated user, if known
	// Group is the group the identity table decided for User (a rule or
	// the directory; package identity): used when clients.users does not
	// name the user, before the device's and the network's group. An
	// unknown name is ignored.
	Group string
	// Device is the device's name from its DHCP lease (package identity),
	// used when no static device names the address.
	Device string
	// MAC is the device's MAC as the identity table knows it (a DHCP
	// lease's, a RADIUS session's Calling-Station-Id), lower case with
	// colons: a static device listed by MAC (clients.devices mac:) at an
	// address no static device is listed by decides as one listed by the
	// address would.
	MAC string
	// DeviceGroup is the group of a device enrolled with a token (package
	// devices, the off-site DoH/DoT listeners): it decides unless a user's
	// group does, and the address (a home network's) names no static
	// device. An unknown name is ignored: the off-site listeners refuse
	// such a device before it gets here (proxy/dns, HasGroup).
	DeviceGroup string
	Host        string     // normalised host name (see blocklists.CanonicalHost); "" for an address alone
	Path        string     // URL path and query as sent ("/a?b") when the proxy sees it; Decide makes it canonical
	Addr        netip.Addr // the address asked for, if any: an IP-literal host, or an address in a DNS answer
	Time        time.Time  // zero: now
}

// Identity is who is asking.
type Identity struct {
	Client netip.Addr
	Device string
	User   string
	Group  string
	// SchoolDevice: a static device in clients.devices (by the address,
	// or by the MAC the identity table holds for it) names the client. It
	// is filtered as the config says, so the block page does not offer
	// the sign-in page there and the page signs nobody in at it.
	SchoolDevice bool
}

// Decision is the engine's answer and its explanation.
type Decision struct {
	Action      Action
	Reason      Reason
	Category    bl.Category // valid when HasCategory
	HasCategory bool
	Matched     bl.CategorySet // every catalogue category the request is listed under
	Severity    bl.Severity
	Route       bl.Route
	List        string // the list that matched ("" if none)
	Entry       string // the entry that matched; never set for the restricted tier
	// matched is, for the restricted tier only, the entry that matched:
	// never shown, only hashed by EntryHash for the record.
	matched    string
	Restricted bool
	Bypass     bool   // a filter-bypass category
	Probe      bool   // an automatic probe (DNS canary), not a person's action
	Rewrite    string // safe-search target host
	// Proxied is the site a web proxy's or archive's request stands for
	// (ProxiedHost, ProxiedURL), when the decision is that site's block;
	// never set for the restricted tier.
	Proxied string
	Identity
	addrRules bool           // the lists deciding had IP rules (see CheckAddrs)
	scheduled bl.CategorySet // of Matched, what a schedule of the group blocks at other times (Scheduled)
}

// EntryHash is, for a restricted-tier block, what the record keeps
// instead of the entry: the SHA-256 (hex) of the matched entry
// (blocklists.EntryHash), which the police can match against the list; ""
// for anything else. It allocates: call it when building the event.
func (d *Decision) EntryHash() string {
	if !d.Restricted {
		return ""
	}
	return bl.EntryHash(d.matched)
}

// CheckAddrs reports whether the addresses a name resolves to can change
// its decision: IP rules were loaded when it was made, and the name is not
// on the group's allow list. The DNS resolver asks it before looking at
// the addresses in an answer (DecideAddrs).
func (d Decision) CheckAddrs() bool { return d.addrRules && d.Reason != ReasonGroupAllow }

// Engine makes decisions. It is an immutable snapshot of everything a
// decision reads: the config it was built from, the blocklist index built
// from that config's lists, and the list-name ↔ bit map that ties the two
// together. A reload or a list refresh builds a new Engine and publishes it
// whole (one atomic pointer), so no request is ever decided by a new index
// with an old engine or the reverse.
type Engine struct {
	gen          uint64 // this engine's number (Gen)
	ix           *bl.Index
	cfg          *config.Config
	groups       map[string]*group
	defaultGroup *group
	nets         []netGroup // most specific first
	devices      map[netip.Addr]*device
	macs         map[string]*device // clients.devices listed by MAC
	users        map[string]*user
	loc          *time.Location
	severity     [64]bl.Severity
	route        [64]bl.Route
	kind         [64]bl.Kind
	listNames    map[bl.Category]string // list bit → list name
	ipDeny       bool                   // some group's inline deny list has addresses
	search       searchSet              // watchlist and search engines (watch.go)
	clock        atomic.Pointer[clockState]
}

type netGroup struct {
	prefix netip.Prefix
	group  *group
}

type device struct {
	name  string
	group *group
}

type user struct {
	name  string
	group *group
}

type group struct {
	name       string
	always     bl.CategorySet // blocked at all times
	windows    []window       // scheduled blocks
	allow      *bl.Index      // inline allow entries (nil if none)
	deny       *bl.Index      // inline deny entries
	allowBits  bl.CategorySet // named allow lists
	denyBits   bl.CategorySet // named deny lists
	safeSearch SafeSearch
	sched      bl.CategorySet // blocked by windows, not always (schedule.go)
	starts     []schedStart   // the windows' openings in week order (schedule.go)
}

// window blocks cats on days (bit n = time.Weekday n) from..to minutes
// after midnight; to < from wraps past midnight.
type window struct {
	days     uint8
	from, to int
	cats     bl.CategorySet
	schedule string // the schedule's name, for explanations
}

// alwaysBlocked is enforced for every group, whatever its config says.
var alwaysBlocked = bl.Restricted | bl.SetOf(bl.Canary)

// catalogueMask covers the real categories (not list bits).
const catalogueMask = bl.CategorySet(1)<<bl.FirstListBit - 1

// blockable excludes marker categories, which never block.
var blockable = catalogueMask &^ bl.SetOfKind(bl.KindMarker)

// Identify maps a client (and user, if logged in) to its identity and
// group: an authenticated user's group wins, then a named device's, then
// the most specific network, then the default group.
func (e *Engine) Identify(client netip.Addr, userName string) Identity {
	id, _ := e.identify(&Request{Client: client, User: userName})
	return id
}

// IdentifyRequest is Identify with what the identity table knows (the
// Group and Device of r).
func (e *Engine) IdentifyRequest(r Request) Identity {
	id, _ := e.identify(&r)
	return id
}

// identify: a user named in clients.users takes that group, then the
// identity table's group for the user (r.Group), then a static device's
// (by the address, else by r.MAC), then the most specific network's, then
// the default group.
func (e *Engine) identify(r *Request) (Identity, *group) {
	client := r.Client.Unmap()
	id := Identity{Client: client, User: r.User, Device: r.Device}
	var g *group
	if r.User != "" {
		if u, ok := e.users[username.Canon(r.User)]; ok && u.group != nil { // in one form (Canon), as config check compares them
			g = u.group
		}
		if g == nil && r.Group != "" {
			g = e.groups[r.Group]
		}
	}
	if g == nil && r.DeviceGroup != "" {
		g = e.groups[r.DeviceGroup]
	}
	if r.DeviceGroup == "" {
		d, ok := e.devices[client]
		if !ok && r.MAC != "" {
			d, ok = e.macs[r.MAC]
		}
		if ok {
			id.Device, id.SchoolDevice = d.name, true
			if g == nil {
				g = d.group
			}
		}
	}
	if g == nil {
		for i := range e.nets {
			if e.nets[i].prefix.Contains(client) {
				g = e.nets[i].group
				break
			}
		}
	}
	if g == nil {
		g = e.defaultGroup
	}
	id.Group = g.name
	return id, g
}

// index is the blocklist index a decision reads: every decision takes it
// here, once.
func (e *Engine) index() *bl.Index { return e.ix }

// Decide answers a request. The URL path is matched in its canonical form
// (blocklists.AppendCanonicalPath) and an address in r.Addr against the IP
// lists, all in the one decision order. A name without a path is blocked
// by a block or deny list's URL entry for the whole site, as its pages are
// (blocklists.Index.LookupSite). It does not allocate (a path over
// about 680 bytes is the exception).
func (e *Engine) Decide(r Request) (d Decision) {
	if r.Path == "" {
		e.decide(&d, &r, "", e.index())
		return d
	}
	// Canonicalise on the stack; the string lives only during decide.
	var buf [2048]byte
	var b []byte
	if 3*len(r.Path)+1 <= len(buf) {
		b = bl.AppendCanonicalPath(buf[:0], r.Path)
	} else {
		b = bl.AppendCanonicalPath(nil, r.Path)
	}
	r.Path = ""
	e.decide(&d, &r, unsafe.String(unsafe.SliceData(b), len(b)), e.index())
	return d
}

// decide is Decide into d (zero on entry) with the canonical path apart
// from r (whose strings may end up in the decision; path's never do). A
// request to a web proxy or archive that stands for another site's page
// (ProxiedHost: Google Translate's www-example-com.translate.goog, the
// request's path on that site; ProxiedURL: the Wayback Machine's
// web.archive.org/web/…/URL and the like) that its own decision lets
// through is blocked as that page would be, as a bypass attempt, since
// the proxy serves it whole.
func (e *Engine) decide(d *Decision, r *Request, path string, ix *bl.Index) {
	e.decideName(d, r, path, ix)
	if d.Action == Block || r.Host == "" {
		return
	}
	site, ok := ProxiedHost(r.Host)
	spath := path
	if !ok {
		if path == "" {
			return
		}
		if site, spath, ok = ProxiedURL(r.Host, path); !ok {
			return
		}
		spath = string(bl.AppendCanonicalPath(nil, spath))
	}
	e.decideProxied(d, r, site, spath, ix)
}

// decideProxied is decide's block of the site a proxy's request stands
// for (apart, so that its copy of the request is made only for one).
func (e *Engine) decideProxied(d *Decision, r *Request, site, spath string, ix *bl.Index) {
	rs := *r
	rs.Host, rs.Addr = site, netip.Addr{}
	if a, err := netip.ParseAddr(site); err == nil {
		rs.Addr = a.Unmap()
	}
	var ds Decision
	if e.decide(&ds, &rs, spath, ix); ds.Action == Block {
		ds.Bypass = true
		if !ds.Restricted {
			ds.Proxied = site
		}
		*d = ds
	}
}

// decideName is decide for the name as asked.
func (e *Engine) decideName(d *Decision, r *Request, path string, ix *bl.Index) {
	id, g := e.identify(r)
	d.Identity = id
	d.addrRules = e.ipDeny || ix.HasPrefixes()
	var tr bl.Trace
	cats := ix.LookupTrace(r.Host, &tr)
	// bpath is the path block and deny lists judge. A name alone (a DNS
	// query, a CONNECT) cannot be told from any page of its site, so they
	// judge it as the site's root, "/": a URL entry for the whole site
	// ("host", "host/"; a hashed host/, its front page) blocks the name
	// (blocklists.Index.LookupSite). Allow lists judge only a path asked
	// for: an allow entry host/ allows pages, not the name.
	bpath := path
	if bpath == "" && r.Host != "" {
		bpath = "/"
	}
	// allowCats is cats as allow lists match: a URL entry only at a
	// boundary of the path (blocklists.Index.LookupAllowURL), where block
	// and deny lists match any path it is a prefix of.
	allowCats := cats
	if path != "" {
		prefix, bounded := ix.LookupURLBounded(r.Host, path)
		cats |= prefix
		allowCats |= bounded
	} else if r.Host != "" {
		cats |= ix.LookupSite(r.Host)
	}
	ip := r.Addr.IsValid()
	if ip {
		ipCats := ix.LookupIP(r.Addr)
		cats |= ipCats
		allowCats |= ipCats
	}
	d.Matched = cats & blockable

	if rc := cats & bl.Restricted; rc != 0 {
		e.block(d, ix, &tr, *r, bpath, ReasonRestricted, rc)
		return
	}
	if cats&g.denyBits != 0 || g.deny.Lookup(r.Host) != 0 || (bpath != "" && g.deny.LookupURL(r.Host, bpath) != 0) ||
		(ip && g.deny.LookupIP(r.Addr) != 0) {
		d.Action, d.Reason = Block, ReasonGroupDeny
		e.explainList(d, ix, &tr, g.deny, *r, bpath, cats&g.denyBits, false)
		if d.Matched != 0 {
			c := e.worst(d.Matched)
			d.Category, d.HasCategory = c, true
			e.classify(d, c)
		} else {
			d.Severity, d.Route = bl.SeverityLow, bl.RouteDSL
		}
		return
	}
	if (allowCats&g.allowBits != 0 || g.allow.Lookup(r.Host) != 0 || (path != "" && g.allow.LookupAllowURL(r.Host, path) != 0) ||
		(ip && g.allow.LookupIP(r.Addr) != 0)) && !e.bypassUnderAllow(ix, &tr, g, r, path, cats) {
		d.Action, d.Reason = Allow, ReasonGroupAllow
		e.explainList(d, ix, &tr, g.allow, *r, path, allowCats&g.allowBits, true)
		// An allow entry lifts blocks, not safe search: the group's
		// safe_search is how a school turns that off. The decision keeps
		// the allow entry that lifted any block.
		safeSearch(d, cats, r.Host, g)
		return
	}
	if bc := cats & (g.blockedAt(e.minute(r.Time)) | alwaysBlocked) & blockable; bc != 0 {
		reason := ReasonCategory
		if bc&g.always == 0 && bc&bl.SetOf(bl.Canary) != 0 {
			reason = ReasonAlways
		}
		e.block(d, ix, &tr, *r, bpath, reason, bc)
		return
	}
	d.scheduled = cats & g.sched
	safeSearch(d, cats, r.Host, g)
}

// bypassUnderAllow reports whether a filter-bypass block the group has
// (a DoH server, a VPN, a web proxy) is listed for r's name more
// specifically than the allow entry that would lift it: an allow entry for
// a parent ("google.com", allowed for a lesson) does not open
// dns.google.com, a DoH server, to every pupil; only one for the name
// itself, a page or an address does. tr is ix's trace of r.Host.
func (e *Engine) bypassUnderAllow(ix *bl.Index, tr *bl.Trace, g *group, r *Request, path string, cats bl.CategorySet) bool {
	bypass := cats & bypassKinds & (g.blockedAt(e.minute(r.Time)) | alwaysBlocked)
	if bypass == 0 || r.Host == "" {
		return false
	}
	// A page or an address allowed (inline or by an allow list) is as
	// specific as an allow entry gets.
	if path != "" {
		if _, bd := ix.LookupURLBounded(r.Host, path); bd&g.allowBits != 0 || g.allow.LookupAllowURL(r.Host, path) != 0 {
			return false
		}
	}
	if r.Addr.IsValid() && (ix.LookupIP(r.Addr)&g.allowBits != 0 || g.allow.LookupIP(r.Addr) != 0) {
		return false
	}
	blockOff, found, full := ix.Nearest(tr, bypass)
	if !found || !full {
		return false // a trace too full to tell: the allow entry decides, as before
	}
	allowOff := len(r.Host) + 1
	if off, ok, _ := ix.Nearest(tr, g.allowBits); ok {
		allowOff = off
	}
	var atr bl.Trace
	if g.allow.LookupTrace(r.Host, &atr) != 0 {
		if off, ok, _ := g.allow.Nearest(&atr, ^bl.CategorySet(0)); ok && off < allowOff {
			allowOff = off
		}
	}
	return blockOff < allowOff
}

// bypassKinds are the filter-bypass categories.
var bypassKinds = bl.SetOfKind(bl.KindBypass)

// safeSearch makes d the safe-search rewrite when host is a search engine
// or video site (cats, its lookup, holds SearchEngine) and g enforces safe
// search.
func safeSearch(d *Decision, cats bl.CategorySet, host string, g *group) {
	if cats.Has(bl.SearchEngine) {
		if t := SafeSearchTarget(host, g.safeSearch); t != "" {
			d.Action, d.Reason, d.Rewrite = Rewrite, ReasonSafeSearch, t
		}
	}
}

// HasIPRules reports whether any address can be blocked: the lists hold
// IP prefixes or a group denies addresses. The DNS resolver asks it before
// looking at the addresses in an answer.
func (e *Engine) HasIPRules() bool {
	return e.ipDeny || e.index().HasPrefixes()
}

// Gen numbers this engine among those built in the process (from 1), so a
// cache can keep what it learnt of one engine without keeping the engine.
func (e *Engine) Gen() uint64 { return e.gen }

// DecideAddrs decides the addresses of an answer for the client of r (its
// Host and Path are ignored), each as Decide would with Request.Addr. It
// returns the first block and the index of its address, or -1; and
// listed, false when no list holds any of addrs and no group denies
// addresses, so that no client's decision of them can block (an address
// alone is judged by those only): that holds for this engine whatever the
// client, so a resolver may remember it for a cached answer under Gen. It
// does not allocate.
func (e *Engine) DecideAddrs(r Request, addrs []netip.Addr) (d Decision, i int, listed bool) {
	ix := e.index()
	if !e.ipDeny && !ix.HasPrefixes() {
		return Decision{}, -1, false
	}
	listed = e.ipDeny
	r.Host, r.Path = "", ""
	for k, a := range addrs {
		r.Addr = a.Unmap()
		if !e.ipDeny && ix.LookupIP(r.Addr) == 0 {
			// Neither a list nor a group's address entries hold it, so no
			// decision of it can block: the client is not identified for
			// it. This runs for every answer not yet remembered as
			// unlisted.
			continue
		}
		listed = true
		var dk Decision
		if e.decide(&dk, &r, "", ix); dk.Action == Block {
			return dk, k, true
		}
	}
	return Decision{}, -1, listed
}

// ErrBlocked is what a BlockedError matches with errors.Is.
var ErrBlocked = errors.New("blocked by policy")

// BlockedError is a name lookup refused by policy because its answer holds
// a blocked CNAME target or address. The proxy answers it as it answers a
// block of the name itself (block page or 403, and an event).
type BlockedError struct {
	Name     string     // the name looked up
	Target   string     // the blocked CNAME target, if that was the cause
	Addr     netip.Addr // the blocked address, if that was the cause
	Decision Decision
}

func (e *BlockedError) Error() string {
	switch {
	case e.Target != "":
		return e.Name + ": CNAME target " + e.Target + ": blocked by policy"
	case e.Addr.IsValid():
		return e.Name + ": address " + e.Addr.String() + ": blocked by policy"
	}
	return e.Name + ": blocked by policy"
}

func (e *BlockedError) Unwrap() error { return ErrBlocked }

// block fills d for a block by one of cats, choosing the most severe.
func (e *Engine) block(d *Decision, ix *bl.Index, tr *bl.Trace, r Request, path string, reason Reason, cats bl.CategorySet) {
	c := e.worst(cats)
	d.Action, d.Reason, d.Category, d.HasCategory = Block, reason, c, true
	e.classify(d, c)
	m, ok := ix.ExplainTrace(r.Host, tr, bl.SetOf(c))
	if !ok && path != "" {
		m, ok = ix.ExplainURL(r.Host, path, bl.SetOf(c))
	}
	if !ok && r.Addr.IsValid() {
		if m, ok = ix.ExplainIP(r.Addr, bl.SetOf(c)); ok {
			m.Entry = addrEntry(r.Addr, m.Entry)
		}
	}
	if ok {
		if l := ix.List(m.List); l != nil {
			d.List = l.Name
		}
		d.Entry = m.Entry
	}
	if d.Restricted {
		d.matched = d.Entry
		d.List, d.Entry = "restricted", ""
	}
}

func (e *Engine) classify(d *Decision, c bl.Category) {
	d.Severity, d.Route = e.severity[c], e.route[c]
	kind := e.kind[c]
	d.Restricted = kind == bl.KindRestricted
	d.Bypass = kind == bl.KindBypass
	d.Probe = kind == bl.KindProbe
}

// explainList names the group list behind an allow or deny decision
// (allow: URL entries as allow lists match them).
func (e *Engine) explainList(d *Decision, ix *bl.Index, tr *bl.Trace, inline *bl.Index, r Request, path string, bits bl.CategorySet, allow bool) {
	if bits != 0 {
		for v := bits; v != 0; v &= v - 1 {
			c := bl.Category(trailingZeros(uint64(v)))
			if m, ok := ix.ExplainTrace(r.Host, tr, bl.SetOf(c)); ok {
				d.List, d.Entry = e.listNames[c], m.Entry
				return
			}
			if m, ok := explainURL(ix, r.Host, path, bl.SetOf(c), allow); ok {
				d.List, d.Entry = e.listNames[c], m.Entry
				return
			}
			if m, ok := ix.ExplainIP(r.Addr, bl.SetOf(c)); ok {
				d.List, d.Entry = e.listNames[c], addrEntry(r.Addr, m.Entry)
				return
			}
		}
		return
	}
	all := bl.CategorySet(1) << inlineBit
	if m, ok := inline.Explain(r.Host, all); ok {
		d.List, d.Entry = inline.List(m.List).Name, m.Entry
	} else if m, ok := explainURL(inline, r.Host, path, all, allow); ok {
		d.List, d.Entry = inline.List(m.List).Name, m.Entry
	} else if m, ok := inline.ExplainIP(r.Addr, all); ok {
		d.List, d.Entry = inline.List(m.List).Name, addrEntry(r.Addr, m.Entry)
	}
}

// explainURL is ix.ExplainURL, or with allow ix.ExplainAllowURL.
func explainURL(ix *bl.Index, host, path string, want bl.CategorySet, allow bool) (bl.Match, bool) {
	if allow {
		return ix.ExplainAllowURL(host, path, want)
	}
	return ix.ExplainURL(host, path, want)
}

// addrEntry names an address and the prefix that matched it: "9.9.9.9",
// or "9.9.9.9 in 9.9.9.0/24".
func addrEntry(a netip.Addr, prefix string) string {
	if p, err := netip.ParsePrefix(prefix); err == nil && p.Bits() == a.BitLen() {
		return a.String()
	}
	return a.String() + " in " + prefix
}

// worst picks the most severe category of cats; restricted first, then an
// automatic probe, then by severity, then catalogue order. A probe (the
// DoH canary) comes before every other category: feeds of DoH servers list
// use-application-dns.net too, and decided as one of them it would be
// answered as a blocked site (an address under block_response null or
// blockpage, which keeps Firefox's DoH on) and reported as a person's
// bypass, where the canary must fail to resolve and is never reported.
func (e *Engine) worst(cats bl.CategorySet) bl.Category {
	best, bestSev := bl.Category(0), -1
	for v := uint64(cats & blockable); v != 0; v &= v - 1 {
		c := bl.Category(trailingZeros(v))
		sev := int(e.severity[c])
		switch e.kind[c] {
		case bl.KindRestricted:
			sev += 100
		case bl.KindProbe:
			sev += 50
		}
		if sev > bestSev {
			best, bestSev = c, sev
		}
	}
	return best
}

// clockState caches the school-local minute of the week for one minute.
type clockState struct {
	start, end int64 // unix seconds
	weekday    int
	minute     int
	// zoneEnd is when the school's UTC offset next changes (unix seconds;
	// never: the largest int64), zoneShift by how much (seconds; positive
	// when the clocks go forward).
	zoneEnd, zoneShift int64
}

type weekMinute struct{ weekday, minute int }

func (e *Engine) minute(t time.Time) weekMinute {
	if t.IsZero() {
		t = time.Now()
	}
	cs := e.clockAt(t)
	return weekMinute{cs.weekday, cs.minute}
}

// clockAt returns the clock state of the minute of t (not zero).
func (e *Engine) clockAt(t time.Time) *clockState {
	sec := t.Unix()
	if cs := e.clock.Load(); cs != nil && sec >= cs.start && sec < cs.end {
		return cs
	}
	lt := t.In(e.loc)
	cs := &clockState{start: sec - int64(lt.Second()), weekday: int(lt.Weekday()), minute: lt.Hour()*60 + lt.Minute(),
		zoneEnd: 1<<63 - 1}
	cs.end = cs.start + 60
	if _, end := lt.ZoneBounds(); !end.IsZero() {
		_, before := lt.Zone()
		_, after := end.Zone()
		cs.zoneEnd, cs.zoneShift = end.Unix(), int64(after-before)
	}
	e.clock.Store(cs)
	return cs
}

// blockedAt returns the categories g blocks at wm.
func (g *group) blockedAt(wm weekMinute) bl.CategorySet {
	set := g.always
	for i := range g.windows {
		w := &g.windows[i]
		if w.active(wm) {
			set |= w.cats
		}
	}
	return set
}

func (w *window) active(wm weekMinute) bool {
	today := w.days&(1<<wm.weekday) != 0
	if w.from <= w.to {
		return today && wm.minute >= w.from && wm.minute < w.to
	}
	yesterday := w.days&(1<<((wm.weekday+6)%7)) != 0
	return (today && wm.minute >= w.from) || (yesterday && wm.minute < w.to)
}

// HasGroup reports whether the config has a group called name.
func (e *Engine) HasGroup(name string) bool {
	_, ok := e.groups[name]
	return ok
}

// Groups lists the group names.
func (e *Engine) Groups() []string {
	out := make([]string, 0, len(e.groups))
	for n := range e.groups {
		out = append(out, n)
	}
	return out
}

// Index returns the blocklist index the engine decides with (nil when it
// was built without one).
func (e *Engine) Index() *bl.Index { return e.ix }

// Config returns the config the engine was built from. A front door that
// needs both reads them from one engine, so they always match.
func (e *Engine) Config() *config.Config { return e.cfg }

// BlockedCategories lists what a group blocks at t (for `check` and docs).
func (e *Engine) BlockedCategories(groupName string, t time.Time) (bl.CategorySet, bool) {
	g, ok := e.groups[groupName]
	if !ok {
		return 0, false
	}
	return (g.blockedAt(e.minute(t)) | alwaysBlocked) & blockable, true
}

// Severity returns the configured severity of c.
func (e *Engine) Severity(c bl.Category) bl.Severity { return e.severity[c] }

// Route returns the configured report route of c.
func (e *Engine) Route(c bl.Category) bl.Route { return e.route[c] }

// ListName names a list bit.
func (e *Engine) ListName(c bl.Category) string { return e.listNames[c] }
