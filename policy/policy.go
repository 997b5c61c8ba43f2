// Package policy decides, for a client and a name or URL, whether Gatehouse
// allows, blocks or rewrites the request, and why. Both front doors (DNS
// and the HTTP proxy) ask the same Engine.
//
// Decision order: restricted tier → group deny → group allow → category
// blocklists (including scheduled categories) → safe-search rewrite →
// allowed.
package policy

import (
	"net/netip"
	"sync/atomic"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/config"
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
	ReasonSafeSearch               // safe-search rewrite
	ReasonAlways                   // a category every group blocks (DNS canaries)
)

var reasonNames = [...]string{"default", "restricted", "group-deny", "group-allow", "category", "safe-search", "always"}

func (r Reason) String() string { return reasonNames[r] }

func (r Reason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// Request is one thing a client asks for.
type Request struct {
	Client netip.Addr
	User   string    // authenticated user, if known
	Host   string    // normalised host name (see blocklists.NormalizeDomain)
	Path   string    // URL path and query ("/a?b") when the proxy sees it
	Time   time.Time // zero: now
}

// Identity is who is asking.
type Identity struct {
	Client netip.Addr
	Device string
	User   string
	Group  string
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
	Identity
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

// Engine makes decisions. It is an immutable snapshot of everything a
// decision reads: the config it was built from, the blocklist index built
// from that config's lists, and the list-name ↔ bit map that ties the two
// together. A reload or a list refresh builds a new Engine and publishes it
// whole (one atomic pointer), so no request is ever decided by a new index
// with an old engine or the reverse.
type Engine struct {
	ix           *bl.Index
	cfg          *config.Config
	groups       map[string]*group
	defaultGroup *group
	nets         []netGroup // most specific first
	devices      map[netip.Addr]*device
	users        map[string]*user
	loc          *time.Location
	severity     [64]bl.Severity
	route        [64]bl.Route
	kind         [64]bl.Kind
	listNames    map[bl.Category]string // list bit → list name
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
	id, _ := e.identify(client, userName)
	return id
}

func (e *Engine) identify(client netip.Addr, userName string) (Identity, *group) {
	client = client.Unmap()
	id := Identity{Client: client, User: userName}
	var g *group
	if userName != "" {
		if u, ok := e.users[userName]; ok && u.group != nil {
			g = u.group
		}
	}
	if d, ok := e.devices[client]; ok {
		id.Device = d.name
		if g == nil {
			g = d.group
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

// Decide answers a request. It does not allocate.
func (e *Engine) Decide(r Request) Decision {
	id, g := e.identify(r.Client, r.User)
	d := Decision{Identity: id}
	ix := e.ix
	var tr bl.Trace
	cats := ix.LookupTrace(r.Host, &tr)
	if r.Path != "" {
		cats |= ix.LookupURL(r.Host, r.Path)
	}
	d.Matched = cats & blockable

	if rc := cats & bl.Restricted; rc != 0 {
		e.block(&d, ix, &tr, r, ReasonRestricted, rc)
		return d
	}
	if cats&g.denyBits != 0 || g.deny.Lookup(r.Host) != 0 || (r.Path != "" && g.deny.LookupURL(r.Host, r.Path) != 0) {
		d.Action, d.Reason = Block, ReasonGroupDeny
		e.explainList(&d, ix, &tr, g.deny, r, cats&g.denyBits)
		if d.Matched != 0 {
			c := e.worst(d.Matched)
			d.Category, d.HasCategory = c, true
			e.classify(&d, c)
		} else {
			d.Severity, d.Route = bl.SeverityLow, bl.RouteDSL
		}
		return d
	}
	if cats&g.allowBits != 0 || g.allow.Lookup(r.Host) != 0 || (r.Path != "" && g.allow.LookupURL(r.Host, r.Path) != 0) {
		d.Action, d.Reason = Allow, ReasonGroupAllow
		e.explainList(&d, ix, &tr, g.allow, r, cats&g.allowBits)
		return d
	}
	if bc := cats & (g.blockedAt(e.minute(r.Time)) | alwaysBlocked) & blockable; bc != 0 {
		reason := ReasonCategory
		if bc&g.always == 0 && bc&bl.SetOf(bl.Canary) != 0 {
			reason = ReasonAlways
		}
		e.block(&d, ix, &tr, r, reason, bc)
		return d
	}
	if cats.Has(bl.SearchEngine) {
		if t := SafeSearchTarget(r.Host, g.safeSearch); t != "" {
			d.Action, d.Reason, d.Rewrite = Rewrite, ReasonSafeSearch, t
			return d
		}
	}
	return d
}

// block fills d for a block by one of cats, choosing the most severe.
func (e *Engine) block(d *Decision, ix *bl.Index, tr *bl.Trace, r Request, reason Reason, cats bl.CategorySet) {
	c := e.worst(cats)
	d.Action, d.Reason, d.Category, d.HasCategory = Block, reason, c, true
	e.classify(d, c)
	m, ok := ix.ExplainTrace(r.Host, tr, bl.SetOf(c))
	if !ok && r.Path != "" {
		m, ok = ix.ExplainURL(r.Host, r.Path, bl.SetOf(c))
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

// explainList names the group list behind an allow or deny decision.
func (e *Engine) explainList(d *Decision, ix *bl.Index, tr *bl.Trace, inline *bl.Index, r Request, bits bl.CategorySet) {
	if bits != 0 {
		for v := bits; v != 0; v &= v - 1 {
			c := bl.Category(trailingZeros(uint64(v)))
			if m, ok := ix.ExplainTrace(r.Host, tr, bl.SetOf(c)); ok {
				d.List, d.Entry = e.listNames[c], m.Entry
				return
			}
			if m, ok := ix.ExplainURL(r.Host, r.Path, bl.SetOf(c)); ok {
				d.List, d.Entry = e.listNames[c], m.Entry
				return
			}
		}
		return
	}
	all := bl.CategorySet(1) << inlineBit
	if m, ok := inline.Explain(r.Host, all); ok {
		d.List, d.Entry = inline.List(m.List).Name, m.Entry
	} else if m, ok := inline.ExplainURL(r.Host, r.Path, all); ok {
		d.List, d.Entry = inline.List(m.List).Name, m.Entry
	}
}

// worst picks the most severe category of cats; restricted first, then by
// severity, then catalogue order.
func (e *Engine) worst(cats bl.CategorySet) bl.Category {
	best, bestSev := bl.Category(0), -1
	for v := uint64(cats & blockable); v != 0; v &= v - 1 {
		c := bl.Category(trailingZeros(v))
		sev := int(e.severity[c])
		if e.kind[c] == bl.KindRestricted {
			sev += 100
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
}

type weekMinute struct{ weekday, minute int }

func (e *Engine) minute(t time.Time) weekMinute {
	if t.IsZero() {
		t = time.Now()
	}
	sec := t.Unix()
	if cs := e.clock.Load(); cs != nil && sec >= cs.start && sec < cs.end {
		return weekMinute{cs.weekday, cs.minute}
	}
	lt := t.In(e.loc)
	cs := &clockState{start: sec - int64(lt.Second()), weekday: int(lt.Weekday()), minute: lt.Hour()*60 + lt.Minute()}
	cs.end = cs.start + 60
	e.clock.Store(cs)
	return weekMinute{cs.weekday, cs.minute}
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
