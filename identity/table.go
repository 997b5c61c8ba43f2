package identity

import (
	"net/netip"
	"path"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-filter/gatehouse/internal/username"
)

// Source is where a mapping came from. A higher Source beats a lower one.
type Source uint8

const (
	SourceAddress   Source = iota // nothing known but the address
	SourceStatic                  // a static device in the config (clients.devices)
	SourceLease                   // a DHCP lease (host name, MAC)
	SourceDirectory               // the school's directory
	SourceRADIUS                  // RADIUS accounting (802.1X Wi-Fi or wired)
	SourceSignin                  // the sign-in page (OpenID Connect; package identity/signin)
	SourceLogin                   // a proxy login
	numSources
)

var sourceNames = [...]string{"address", "device", "dhcp", "directory", "radius", "signin", "login"}

// String is the name events record for the source: address, device,
// dhcp, directory, radius, signin or login.
func (s Source) String() string {
	if int(s) < len(sourceNames) {
		return sourceNames[s]
	}
	return "unknown"
}

// Mapping is what one source says about one address.
type Mapping struct {
	Addr   netip.Addr
	Source Source
	// Session identifies the mapping within its source (a RADIUS
	// Acct-Session-Id, a lease's MAC): Remove with a session removes the
	// mapping only if it is still that one.
	Session string
	User    string // the user name ("" for a lease)
	Device  string // a host name (leases)
	// MAC is the device's MAC, lower case with colons. For a mapping that
	// names only a person (a login, a sign-in) the table sets it to the
	// device at the address when the mapping is made (bindDevice): when
	// another device is given the address, the mapping ends.
	MAC string
	// Group, if set, is the group the source decided for the user (a
	// directory's group membership); otherwise Rules decide.
	Group string
	// Display names the user where no Directory does (the sign-in page's
	// ID token "name" claim); a Directory's display name comes first.
	Display string
	Expires time.Time // the end of the session or lease; zero is not allowed
}

// Person is what a directory knows about a user.
type Person struct {
	Display string // "Amira Khan"
	Year    string // "Year 8"
	Class   string // "8B"
	Group   string // a Gatehouse group from the directory's membership, if any
	// User is the name a directory login is recorded under (LDAP.Login
	// sets it): in the one form names are compared in, without the
	// school's realm. "" from a directory that only names people.
	User string
}

// Directory looks people up by user name. It is called when a mapping is
// set, never on a query. Implementations must be safe for concurrent use
// and must not call back into the Table.
type Directory interface {
	Person(user string) (Person, bool)
}

// Rule maps user names matching Match (a path.Match pattern, compared
// in user names' canonical form, username.Canon: without case, NFKC,
// spaces trimmed and collapsed; e.g. "*@students.school.example") to
// Group.
type Rule struct {
	Match string
	Group string
}

// Entry is the merged view of one address. Entries are immutable.
type Entry struct {
	User    string
	Display string
	Year    string
	Class   string
	// Group is the group decided for User ("" when no rule or directory
	// decides it: then the address decides, as without identity).
	Group  string
	Device string // the device's host name from its lease, if any
	MAC    string
	// Source named the user (or, without one, the device).
	Source Source
	// Until is when the earliest of the mappings behind the Entry ends
	// (unix nanoseconds); Lookup ignores the Entry from then on.
	Until int64
}

const numShards = 64

// maxExpiry is the latest a mapping may end (later ones are cut to it), so
// that expiry times in unix nanoseconds never overflow.
var maxExpiry = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)

// DefaultMaxAddrs is the default bound on addresses in the table.
const DefaultMaxAddrs = 65536

// Table is the per-address identity table. The zero value is not usable;
// call New.
type Table struct {
	shards [numShards]atomic.Pointer[shardMap]

	mu      sync.Mutex
	slots   [numShards]map[netip.Addr]*slot
	n       int
	max     int
	gen     uint64                   // changes to the shard maps so far
	pending [numShards]bool          // shards whose published map is behind slots
	dir     Directory                // nil: none
	rules   []Rule                   // user → group
	now     func() time.Time         //
	stats   Stats                    //
	onFull  func(netip.Addr, Source) // called (mu held) when a new address is refused

	pubMu     sync.Mutex
	published uint64 // gen of the last published shard maps
}

// Stats counts what the table did.
type Stats struct {
	Sets, Removes, Expired, Refused uint64
}

type cell struct {
	e atomic.Pointer[Entry]
}

type slot struct {
	c  *cell
	ms [numSources]*Mapping
}

// Options configure a Table.
type Options struct {
	MaxAddrs  int // addresses held at most (default DefaultMaxAddrs)
	Directory Directory
	Rules     []Rule
	Now       func() time.Time
	// OnFull is told of a new address refused because the table is full.
	OnFull func(netip.Addr, Source)
}

// New makes an empty table.
func New(o Options) *Table {
	if o.MaxAddrs <= 0 {
		o.MaxAddrs = DefaultMaxAddrs
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	t := &Table{max: o.MaxAddrs, dir: o.Directory, rules: canonRules(o.Rules), now: o.Now, onFull: o.OnFull}
	for i := range t.shards {
		t.shards[i].Store(&shardMap{v4: map[uint32]*cell{}, v6: map[[16]byte]*cell{}})
		t.slots[i] = map[netip.Addr]*slot{}
	}
	return t
}

// shardMap is one shard's published addresses: IPv4 keyed by a uint32
// (hashed three times faster than a netip.Addr or 16 bytes), IPv6 by its
// 16 bytes. Immutable once published.
type shardMap struct {
	v4 map[uint32]*cell
	v6 map[[16]byte]*cell
}

func v4Key(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func shard4(k uint32) int { return int(k^k>>8^k>>16*7) & (numShards - 1) }

func shard6(b *[16]byte) int {
	return int(b[15]^b[14]*7^b[13]*13^b[7]*3) & (numShards - 1)
}

// shardOf is the shard of an unmapped address.
func shardOf(a netip.Addr) int {
	if a.Is4() {
		return shard4(v4Key(a))
	}
	b := a.As16()
	return shard6(&b)
}

// Lookup returns the Entry of addr at now (unix nanoseconds), or nil when
// nothing but the address is known. It takes no lock and does not
// allocate.
func (t *Table) Lookup(addr netip.Addr, now int64) *Entry {
	if t == nil {
		return nil
	}
	addr = addr.Unmap()
	var c *cell
	if addr.Is4() {
		k := v4Key(addr)
		c = t.shards[shard4(k)].Load().v4[k]
	} else {
		k := addr.As16()
		c = t.shards[shard6(&k)].Load().v6[k]
	}
	if c == nil {
		return nil
	}
	e := c.e.Load()
	if e == nil || now >= e.Until {
		return nil
	}
	return e
}

// Len is the number of addresses in the table.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

// Stats returns the counts so far.
func (t *Table) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stats
}

// Set records m, replacing the mapping of m.Source for m.Addr. It returns
// false when the table is full and m.Addr is a new address (the mapping
// is refused and counted). The change is visible to Lookup when Set
// returns.
func (t *Table) Set(m Mapping) bool {
	return t.SetAll([]Mapping{m}) == 1
}

// SetAll records several mappings, publishing once; it returns how many
// were taken.
func (t *Table) SetAll(ms []Mapping) int {
	taken := 0
	now := t.now().UnixNano()
	t.mu.Lock()
	for i := range ms {
		m := ms[i]
		m.Addr = m.Addr.Unmap()
		if !m.Addr.IsValid() || m.Source == SourceAddress || m.Source >= numSources || !m.Expires.After(time.Unix(0, now)) {
			continue
		}
		if m.Expires.After(maxExpiry) {
			m.Expires = maxExpiry // UnixNano stays in range
		}
		sh := shardOf(m.Addr)
		s := t.slots[sh][m.Addr]
		if s == nil {
			if t.n >= t.max {
				t.stats.Refused++
				if t.onFull != nil {
					t.onFull(m.Addr, m.Source)
				}
				continue
			}
			s = &slot{c: &cell{}}
			t.slots[sh][m.Addr] = s
			t.n++
			t.pending[sh] = true
			t.gen++
		}
		t.stats.Removes += uint64(bindDevice(s, &m))
		s.ms[m.Source] = &m
		t.stats.Sets++
		taken++
		t.merge(s, now)
	}
	gen := t.gen
	t.mu.Unlock()
	t.publish(gen)
	return taken
}

// bindDevice ties what is said about an address to the device behind it
// (t.mu held). A mapping that names only a person (a proxy login, the
// sign-in page, an 802.1X session without Calling-Station-Id) is bound to
// the MAC of the device at the address when it is made, kept in its MAC;
// one made while no device is known there is bound to the first device
// seen. A mapping that names a device (a lease, a RADIUS session) which
// is new at the address ends the mappings of the sources above it that
// are bound to another device: the address has been handed to another
// device, so the person who signed in, logged in or had an 802.1X session
// from the old one no longer names it (nor gives it their group). Only a
// change ends anything: a lease read again or an Interim-Update of the
// same device does not. It returns how many mappings it ended.
func bindDevice(s *slot, m *Mapping) int {
	if m.MAC == "" {
		if m.Device == "" {
			if old := s.ms[m.Source]; old != nil && old.Session == m.Session && old.User == m.User {
				m.MAC = old.MAC // the same session or login again: the same device
			} else {
				m.MAC = slotMAC(s, m.Source)
			}
		}
		return 0
	}
	if old := s.ms[m.Source]; old != nil && old.MAC == m.MAC {
		return 0
	}
	n := 0
	for src := range s.ms {
		o := s.ms[src]
		switch {
		case o == nil || Source(src) == m.Source:
		case o.MAC == "" && o.Device == "":
			c := *o // mappings are shared with nobody, but kept immutable
			c.MAC = m.MAC
			s.ms[src] = &c
		case Source(src) > m.Source && o.MAC != "" && o.MAC != m.MAC:
			s.ms[src] = nil
			n++
		}
	}
	return n
}

// slotMAC is the device MAC another source than src holds for the
// address, the highest source's first ("" when none is known).
func slotMAC(s *slot, src Source) string {
	for i := numSources - 1; i > SourceAddress; i-- {
		if o := s.ms[i]; o != nil && i != src && o.MAC != "" {
			return o.MAC
		}
	}
	return ""
}

// Remove ends the mapping of src for addr; with a session, only if the
// mapping is still that session's. It reports whether one was removed.
func (t *Table) Remove(addr netip.Addr, src Source, session string) bool {
	addr = addr.Unmap()
	now := t.now().UnixNano()
	t.mu.Lock()
	sh := shardOf(addr)
	s := t.slots[sh][addr]
	if s == nil || src >= numSources || s.ms[src] == nil || (session != "" && s.ms[src].Session != session) {
		t.mu.Unlock()
		return false
	}
	s.ms[src] = nil
	t.stats.Removes++
	t.settle(sh, addr, s, now)
	gen := t.gen
	t.mu.Unlock()
	t.publish(gen)
	return true
}

// RemoveSource ends every mapping of src (e.g. a lease file that is gone)
// for which keep returns false (nil: all).
func (t *Table) RemoveSource(src Source, keep func(*Mapping) bool) int {
	now := t.now().UnixNano()
	n := 0
	t.mu.Lock()
	for sh := range t.slots {
		for a, s := range t.slots[sh] {
			if m := s.ms[src]; m != nil && (keep == nil || !keep(m)) {
				s.ms[src] = nil
				n++
				t.settle(sh, a, s, now)
			}
		}
	}
	t.stats.Removes += uint64(n)
	gen := t.gen
	t.mu.Unlock()
	t.publish(gen)
	return n
}

// Expire removes every mapping ended at now; the serve loop calls it every
// second (Run). Lookup already ignores an ended Entry.
func (t *Table) Expire() int {
	now := t.now().UnixNano()
	n := 0
	t.mu.Lock()
	for sh := range t.slots {
		for a, s := range t.slots[sh] {
			changed := false
			for i, m := range s.ms {
				if m != nil && m.Expires.UnixNano() <= now {
					s.ms[i] = nil
					changed = true
					n++
				}
			}
			if changed {
				t.settle(sh, a, s, now)
			}
		}
	}
	t.stats.Expired += uint64(n)
	gen := t.gen
	t.mu.Unlock()
	t.publish(gen)
	return n
}

// Run calls Expire every interval until stop is closed.
func (t *Table) Run(stop <-chan struct{}, interval time.Duration) {
	tk := time.NewTicker(interval)
	defer tk.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tk.C:
			t.Expire()
		}
	}
}

// GroupOf is the group the table decides for user named by a mapping
// whose source decided group ("" for none): group, else the Directory's,
// else the first rule's matching user; "" when none does (the address
// decides). The proxy asks it for a request that carries its own login
// where the table names someone else at the address (several people
// behind one address: a terminal server, a NAT'd classroom), so the login
// keeps its own group. t may be nil.
func (t *Table) GroupOf(user, group string) string {
	if group != "" || t == nil || user == "" {
		return group
	}
	t.mu.Lock()
	rules := t.rules
	t.mu.Unlock()
	if t.dir != nil {
		if p, ok := t.dir.Person(user); ok && p.Group != "" {
			return p.Group
		}
	}
	return matchRules(rules, user)
}

// SetRules replaces the user → group rules and merges every address
// again (a config reload).
func (t *Table) SetRules(rules []Rule) {
	rules = canonRules(rules)
	t.mu.Lock()
	t.rules = rules
	t.mu.Unlock()
	t.Remerge()
}

// Regroup decides again the group of every src mapping whose user group
// answers for (a reload changed how directory groups map to Gatehouse
// groups) and merges the addresses it changed. It returns how many.
// group is called with the table locked, as a Directory is.
func (t *Table) Regroup(src Source, group func(user string) (string, bool)) int {
	if src >= numSources {
		return 0
	}
	now := t.now().UnixNano()
	n := 0
	t.mu.Lock()
	for sh := range t.slots {
		for _, s := range t.slots[sh] {
			m := s.ms[src]
			if m == nil || m.User == "" {
				continue
			}
			g, ok := group(m.User)
			if !ok || g == m.Group {
				continue
			}
			c := *m
			c.Group = g
			s.ms[src] = &c
			t.merge(s, now)
			n++
		}
	}
	t.mu.Unlock()
	return n
}

// Remerge merges every address again: the directory's contents changed.
func (t *Table) Remerge() {
	now := t.now().UnixNano()
	t.mu.Lock()
	for sh := range t.slots {
		for _, s := range t.slots[sh] {
			t.merge(s, now)
		}
	}
	t.mu.Unlock()
}

// settle re-merges s after a removal, dropping the address when nothing
// is left (t.mu held).
func (t *Table) settle(sh int, a netip.Addr, s *slot, now int64) {
	for _, m := range s.ms {
		if m != nil {
			t.merge(s, now)
			return
		}
	}
	s.c.e.Store(nil)
	delete(t.slots[sh], a)
	t.n--
	t.pending[sh] = true
	t.gen++
}

// merge computes the Entry of s and stores it in its cell (t.mu held).
func (t *Table) merge(s *slot, now int64) {
	e := &Entry{Until: 1<<63 - 1}
	var person *Mapping
	for src := numSources - 1; src > SourceAddress; src-- {
		m := s.ms[src]
		if m == nil || m.Expires.UnixNano() <= now {
			continue
		}
		e.Until = min(e.Until, m.Expires.UnixNano())
		if m.User != "" && person == nil {
			person = m
		}
		if e.Device == "" && m.Device != "" {
			e.Device = m.Device
		}
		if e.MAC == "" && m.MAC != "" {
			e.MAC = m.MAC
		}
		if e.Source == SourceAddress {
			e.Source = src
		}
	}
	if person != nil {
		e.User, e.Source, e.Group = person.User, person.Source, person.Group
		if t.dir != nil {
			if p, ok := t.dir.Person(person.User); ok {
				e.Display, e.Year, e.Class = p.Display, p.Year, p.Class
				if e.Group == "" {
					e.Group = p.Group
				}
			}
		}
		if e.Display == "" {
			e.Display = person.Display
		}
		if e.Group == "" {
			e.Group = matchRules(t.rules, person.User)
		}
	}
	if e.Source == SourceAddress {
		e = nil
	}
	s.c.e.Store(e)
}

// canonRules returns a copy of rules with each pattern in the canonical
// form of the user names it is compared with (username.Canon), so that a
// pattern written with capitals, a full-width "＠", a non-breaking or
// doubled space or decomposed accents matches the names it spells.
func canonRules(rules []Rule) []Rule {
	out := make([]Rule, len(rules))
	for i, r := range rules {
		out[i] = Rule{Match: username.Canon(r.Match), Group: r.Group}
	}
	return out
}

// matchRules returns the group of the first of rules (canonRules) whose
// pattern user's canonical form matches, or "".
func matchRules(rules []Rule, user string) string {
	u := username.Canon(user)
	for _, r := range rules {
		if ok, _ := path.Match(r.Match, u); ok { // r.Match is in the names' form (canonRules)
			return r.Group
		}
	}
	return ""
}

// publish makes the shard maps of every change up to gen visible. Callers
// that arrive while another publishes wait and, most often, find their
// change published with the other's (group commit).
func (t *Table) publish(gen uint64) {
	t.pubMu.Lock()
	defer t.pubMu.Unlock()
	if t.published >= gen {
		return
	}
	t.mu.Lock()
	var todo [numShards]*shardMap
	for sh := range t.slots {
		if !t.pending[sh] {
			continue
		}
		t.pending[sh] = false
		m := &shardMap{v4: make(map[uint32]*cell, len(t.slots[sh])), v6: map[[16]byte]*cell{}}
		for a, s := range t.slots[sh] {
			if a.Is4() {
				m.v4[v4Key(a)] = s.c
			} else {
				m.v6[a.As16()] = s.c
			}
		}
		todo[sh] = m
	}
	g := t.gen
	t.mu.Unlock()
	for sh, m := range todo {
		if m != nil {
			t.shards[sh].Store(m)
		}
	}
	t.published = g
}
