package identity

import (
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) now() time.Time               { return time.Unix(0, c.ns.Load()) }
func (c *clock) add(d time.Duration)          { c.ns.Add(int64(d)) }
func (c *clock) at(d time.Duration) time.Time { return c.now().Add(d) }

type dir map[string]Person

func (d dir) Person(u string) (Person, bool) { p, ok := d[u]; return p, ok }

var a1 = netip.MustParseAddr("10.1.2.3")

func TestPrecedenceAndFallback(t *testing.T) {
	c := newClock()
	tb := New(Options{Now: c.now, Rules: []Rule{{Match: "*@students.example", Group: "students"}},
		Directory: dir{"amira@students.example": {Display: "Amira Khan", Year: "Year 8", Class: "8B"}}})
	now := func() int64 { return c.now().UnixNano() }
	if e := tb.Lookup(a1, now()); e != nil {
		t.Fatalf("empty table names %+v", e)
	}
	tb.Set(Mapping{Addr: a1, Source: SourceLease, Device: "lib-laptop-12", MAC: "3c:22:fb:12:34:56", Expires: c.at(time.Hour)})
	e := tb.Lookup(a1, now())
	if e == nil || e.Device != "lib-laptop-12" || e.User != "" || e.Source != SourceLease {
		t.Fatalf("lease: %+v", e)
	}
	tb.Set(Mapping{Addr: a1, Source: SourceRADIUS, Session: "s1", User: "amira@students.example", Expires: c.at(10 * time.Minute)})
	e = tb.Lookup(a1, now())
	if e == nil || e.User != "amira@students.example" || e.Source != SourceRADIUS || e.Device != "lib-laptop-12" ||
		e.Display != "Amira Khan" || e.Year != "Year 8" || e.Class != "8B" || e.Group != "students" {
		t.Fatalf("radius over lease: %+v", e)
	}
	// A login beats RADIUS.
	tb.Set(Mapping{Addr: a1, Source: SourceLogin, User: "teacher1", Expires: c.at(5 * time.Minute)})
	if e = tb.Lookup(a1, now()); e.User != "teacher1" || e.Source != SourceLogin || e.Group != "" {
		t.Fatalf("login over radius: %+v", e)
	}
	// A lower source never overrides a higher one, whatever the order.
	tb.Set(Mapping{Addr: a1, Source: SourceDirectory, User: "someone", Expires: c.at(time.Hour)})
	if e = tb.Lookup(a1, now()); e.User != "teacher1" {
		t.Fatalf("directory over login: %+v", e)
	}
	tb.Remove(a1, SourceDirectory, "")
	// The login expires: RADIUS names the user again.
	c.add(6 * time.Minute)
	if e = tb.Lookup(a1, now()); e != nil {
		t.Fatalf("expired entry still looked up before the sweep: %+v", e)
	}
	if n := tb.Expire(); n != 1 {
		t.Fatalf("expired %d, want 1", n)
	}
	if e = tb.Lookup(a1, now()); e == nil || e.User != "amira@students.example" {
		t.Fatalf("after login expiry: %+v", e)
	}
	// A Stop for another session changes nothing; the right one ends it.
	if tb.Remove(a1, SourceRADIUS, "other") {
		t.Fatal("removed another session's mapping")
	}
	if !tb.Remove(a1, SourceRADIUS, "s1") {
		t.Fatal("stop did not remove")
	}
	if e = tb.Lookup(a1, now()); e == nil || e.User != "" || e.Device != "lib-laptop-12" {
		t.Fatalf("after stop: %+v", e)
	}
	c.add(time.Hour)
	tb.Expire()
	if e = tb.Lookup(a1, now()); e != nil || tb.Len() != 0 {
		t.Fatalf("after lease expiry: %+v, len %d", e, tb.Len())
	}
}

func TestRefusesExpiredAndBadMappings(t *testing.T) {
	c := newClock()
	tb := New(Options{Now: c.now})
	// A mapping that ends in the far future (a lease that never ends)
	// must not overflow the nanosecond clock.
	if !tb.Set(Mapping{Addr: a1, Source: SourceLease, Device: "pc", Expires: time.Unix(1<<40, 0)}) || tb.Lookup(a1, c.now().UnixNano()) == nil {
		t.Fatal("a mapping far in the future is not looked up")
	}
	tb.Remove(a1, SourceLease, "")
	if tb.Set(Mapping{Addr: a1, Source: SourceRADIUS, User: "x", Expires: c.at(-time.Second)}) {
		t.Fatal("took an expired mapping")
	}
	if tb.Set(Mapping{Source: SourceRADIUS, User: "x", Expires: c.at(time.Second)}) {
		t.Fatal("took a mapping without an address")
	}
	if tb.Set(Mapping{Addr: a1, Source: numSources, User: "x", Expires: c.at(time.Second)}) {
		t.Fatal("took an unknown source")
	}
}

func TestBound(t *testing.T) {
	c := newClock()
	var full []netip.Addr
	tb := New(Options{Now: c.now, MaxAddrs: 100, OnFull: func(a netip.Addr, _ Source) { full = append(full, a) }})
	for i := range 150 {
		tb.Set(Mapping{Addr: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), Source: SourceRADIUS, User: "u", Expires: c.at(time.Minute)})
	}
	if tb.Len() != 100 || tb.Stats().Refused != 50 || len(full) != 50 {
		t.Fatalf("len %d refused %d told %d", tb.Len(), tb.Stats().Refused, len(full))
	}
	// An address already held is still updated at the bound.
	if !tb.Set(Mapping{Addr: netip.AddrFrom4([4]byte{10, 0, 0, 1}), Source: SourceLogin, User: "v", Expires: c.at(time.Minute)}) {
		t.Fatal("update refused at the bound")
	}
	c.add(2 * time.Minute)
	tb.Expire()
	if tb.Len() != 0 {
		t.Fatalf("len %d after expiry", tb.Len())
	}
	if !tb.Set(Mapping{Addr: a1, Source: SourceRADIUS, User: "u", Expires: c.at(time.Minute)}) {
		t.Fatal("refused after expiry made room")
	}
}

func TestRulesReload(t *testing.T) {
	c := newClock()
	tb := New(Options{Now: c.now})
	tb.Set(Mapping{Addr: a1, Source: SourceRADIUS, User: "Bob@Staff.Example", Expires: c.at(time.Minute)})
	if e := tb.Lookup(a1, c.now().UnixNano()); e.Group != "" {
		t.Fatalf("group %q without rules", e.Group)
	}
	tb.SetRules([]Rule{{Match: "*@staff.example", Group: "staff"}})
	if e := tb.Lookup(a1, c.now().UnixNano()); e.Group != "staff" {
		t.Fatalf("group %q after rules", e.Group)
	}
}

// TestRulesCanonical: a rule's pattern is compared with user names in the
// form the table keys them (username.Canon: NFKC, spaces trimmed and
// collapsed, lower case), so a pattern IT wrote with a full-width "＠", a
// non-breaking or doubled space, decomposed accents or capitals matches
// the users it names, given at New and by SetRules.
func TestRulesCanonical(t *testing.T) {
	rules := []Rule{
		{Match: "*＠Students.Example", Group: "students"},
		{Match: "Year\u00a07 *", Group: "year7"},
		{Match: "  year  8 *", Group: "year8"},
		{Match: "*@e\u0301cole.example", Group: "ecole"},
	}
	users := map[string]string{
		"alice@students.example": "students", "Year 7 Bob": "year7", "year 8 carol": "year8",
		"Dana@\u00c9cole.example": "ecole", "eve@staff.example": "",
	}
	c := newClock()
	for _, how := range []string{"New", "SetRules"} {
		var tb *Table
		if how == "New" {
			tb = New(Options{Now: c.now, Rules: rules})
		} else {
			tb = New(Options{Now: c.now})
			tb.SetRules(rules)
		}
		i := 0
		for user, want := range users {
			i++
			a := netip.AddrFrom4([4]byte{10, 9, 0, byte(i)})
			tb.Set(Mapping{Addr: a, Source: SourceRADIUS, User: user, Expires: c.at(time.Minute)})
			if e := tb.Lookup(a, c.now().UnixNano()); e == nil || e.Group != want {
				t.Errorf("%s: %q: entry %+v, want group %q", how, user, e, want)
			}
		}
	}
	if rules[0].Match != "*＠Students.Example" {
		t.Errorf("the caller's rules were changed: %q", rules[0].Match)
	}
}

// TestConcurrent reads while sources write (run with -race).
func TestConcurrent(t *testing.T) {
	tb := New(Options{})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				a := netip.AddrFrom4([4]byte{10, byte(w), byte(i >> 8), byte(i)})
				tb.Set(Mapping{Addr: a, Source: SourceRADIUS, User: fmt.Sprint("u", i), Expires: time.Now().Add(time.Minute)})
				if i%3 == 0 {
					tb.Remove(a, SourceRADIUS, "")
				}
			}
		}()
	}
	var reads atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for i := range 256 {
				if e := tb.Lookup(netip.AddrFrom4([4]byte{10, 1, 0, byte(i)}), time.Now().UnixNano()); e != nil && e.User == "" {
					t.Error("entry without user")
				}
			}
			reads.Add(1)
		}
	}()
	time.Sleep(0) // let the reader start
	for tb.Stats().Sets < 8000 {
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if got, want := tb.Len(), 4*(2000-667); got != want {
		t.Fatalf("len %d, want %d", got, want)
	}
	// Every published address is looked up; every removed one is not.
	for w := range 4 {
		for i := range 2000 {
			e := tb.Lookup(netip.AddrFrom4([4]byte{10, byte(w), byte(i >> 8), byte(i)}), time.Now().UnixNano())
			if (e == nil) != (i%3 == 0) {
				t.Fatalf("10.%d.%d.%d: %+v", w, i>>8, i&255, e)
			}
		}
	}
}

func BenchmarkLookup(b *testing.B) {
	tb := New(Options{})
	var ms []Mapping
	for i := range 50000 {
		ms = append(ms, Mapping{Addr: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), Source: SourceRADIUS, User: "u", Expires: time.Now().Add(time.Hour)})
	}
	tb.SetAll(ms)
	a := netip.AddrFrom4([4]byte{10, 0, 100, 7})
	now := time.Now().UnixNano()
	b.ReportAllocs()
	for b.Loop() {
		if tb.Lookup(a, now) == nil {
			b.Fatal("missing")
		}
	}
}

// BenchmarkMemoryPerAddress reports the heap one address costs with a
// RADIUS user and a lease (README's bound).
func BenchmarkMemoryPerAddress(b *testing.B) {
	const n = 50000
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		tb := New(Options{})
		exp := time.Now().Add(time.Hour)
		ms := make([]Mapping, 0, 2*n)
		for i := range n {
			a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			ms = append(ms, Mapping{Addr: a, Source: SourceRADIUS, Session: fmt.Sprint("10.0.0.1/sess-", i), User: fmt.Sprintf("pupil%05d@students.school.example", i), MAC: "3c:22:fb:12:34:56", Expires: exp},
				Mapping{Addr: a, Source: SourceLease, Session: "lease:/var/lib/dhcp/dhcpd.leases", Device: fmt.Sprintf("LIB-LAPTOP-%05d", i), MAC: "3c:22:fb:12:34:56", Expires: exp})
		}
		tb.SetAll(ms)
		ms = nil
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/addr")
		runtime.KeepAlive(tb)
	}
}

// TestIPv6AndMapped: IPv6 addresses are mapped apart from IPv4, and an
// IPv4-mapped IPv6 address is its IPv4 address.
func TestIPv6AndMapped(t *testing.T) {
	c := newClock()
	tb := New(Options{Now: c.now})
	v6 := netip.MustParseAddr("fd00::5")
	tb.Set(Mapping{Addr: v6, Source: SourceRADIUS, User: "six", Expires: c.at(time.Hour)})
	tb.Set(Mapping{Addr: netip.MustParseAddr("::ffff:10.1.2.3"), Source: SourceRADIUS, User: "four", Expires: c.at(time.Hour)})
	now := c.now().UnixNano()
	if e := tb.Lookup(v6, now); e == nil || e.User != "six" {
		t.Fatalf("v6: %+v", e)
	}
	if e := tb.Lookup(a1, now); e == nil || e.User != "four" {
		t.Fatalf("mapped v4: %+v", e)
	}
	if e := tb.Lookup(netip.MustParseAddr("::a01:203"), now); e != nil {
		t.Fatalf("an IPv6 address with the same low bytes: %+v", e)
	}
	tb.Remove(v6, SourceRADIUS, "")
	if e := tb.Lookup(v6, now); e != nil || tb.Len() != 1 {
		t.Fatalf("after remove: %+v, len %d", e, tb.Len())
	}
}

// TestRegroup: a reload's new directory group mapping reaches the
// addresses already named by logins; other users and sources keep theirs.
func TestRegroup(t *testing.T) {
	c := newClock()
	tb := New(Options{Now: c.now})
	a2 := netip.MustParseAddr("10.1.2.4")
	tb.Set(Mapping{Addr: a1, Source: SourceLogin, User: "amira", Group: "students", Expires: c.at(time.Hour)})
	tb.Set(Mapping{Addr: a2, Source: SourceLogin, User: "bob", Group: "staff", Expires: c.at(time.Hour)})
	tb.Set(Mapping{Addr: a2, Source: SourceRADIUS, User: "amira", Group: "", Expires: c.at(time.Hour)})
	n := tb.Regroup(SourceLogin, func(u string) (string, bool) {
		if u == "amira" {
			return "sixth-form", true
		}
		return "", false
	})
	if n != 1 {
		t.Fatalf("regrouped %d, want 1", n)
	}
	if e := tb.Lookup(a1, c.now().UnixNano()); e.Group != "sixth-form" || e.User != "amira" {
		t.Fatalf("amira's address: %+v", e)
	}
	if e := tb.Lookup(a2, c.now().UnixNano()); e.Group != "staff" || e.User != "bob" {
		t.Fatalf("bob's address: %+v", e)
	}
	if n := tb.Regroup(SourceLogin, func(string) (string, bool) { return "sixth-form", true }); n != 1 {
		t.Fatalf("second regroup changed %d, want only bob's", n)
	}
}

// TestSigninSource: a sign-in page mapping beats RADIUS and is beaten by a
// proxy login; its Display names a user no directory knows, and a
// directory's display name comes first.
func TestSigninSource(t *testing.T) {
	c := newClock()
	tb := New(Options{Now: c.now, Directory: dir{"amira@school.example": {Display: "Amira Khan", Year: "Year 8"}}})
	now := func() int64 { return c.now().UnixNano() }
	tb.Set(Mapping{Addr: a1, Source: SourceRADIUS, User: "wifi-user", Expires: c.at(time.Hour)})
	tb.Set(Mapping{Addr: a1, Source: SourceSignin, Session: "x", User: "ben@school.example", Display: "Ben Ode", Expires: c.at(time.Hour)})
	if e := tb.Lookup(a1, now()); e == nil || e.User != "ben@school.example" || e.Source != SourceSignin || e.Display != "Ben Ode" ||
		e.Source.String() != "signin" {
		t.Fatalf("sign-in over radius: %+v", e)
	}
	tb.Set(Mapping{Addr: a1, Source: SourceSignin, Session: "y", User: "amira@school.example", Display: "A. Khan (token)", Expires: c.at(time.Hour)})
	if e := tb.Lookup(a1, now()); e.User != "amira@school.example" || e.Display != "Amira Khan" || e.Year != "Year 8" {
		t.Fatalf("the directory's name comes first: %+v", e)
	}
	tb.Set(Mapping{Addr: a1, Source: SourceLogin, User: "teacher1", Expires: c.at(time.Minute)})
	if e := tb.Lookup(a1, now()); e.User != "teacher1" || e.Source != SourceLogin {
		t.Fatalf("proxy login over sign-in: %+v", e)
	}
	if tb.Remove(a1, SourceSignin, "x") {
		t.Fatal("removed another session's sign-in")
	}
	c.add(2 * time.Minute)
	tb.Expire()
	if e := tb.Lookup(a1, now()); e == nil || e.User != "amira@school.example" {
		t.Fatalf("after the login: %+v", e)
	}
	tb.Remove(a1, SourceSignin, "y")
	if e := tb.Lookup(a1, now()); e == nil || e.User != "wifi-user" {
		t.Fatalf("after sign-out: %+v", e)
	}
}

// TestRulesFoldCase: identity.groups patterns and user names are compared
// in one form (username.Canon: full case folding), so a name spelt with
// "ß" by one source matches a pattern written with "SS", and the reverse
// (before, a pattern with "ß" matched no folded name).
func TestRulesFoldCase(t *testing.T) {
	c := newClock()
	tb := New(Options{Now: c.now, Rules: []Rule{{Match: "STRASSE.*", Group: "students"}, {Match: "*@groß.example", Group: "staff"}}})
	for user, want := range map[string]string{"straße.k": "students", "j.smith@GROSS.example": "staff"} {
		tb.Set(Mapping{Addr: a1, Source: SourceRADIUS, Session: "s1", User: user, Expires: c.at(time.Hour)})
		if e := tb.Lookup(a1, c.now().UnixNano()); e == nil || e.Group != want {
			t.Errorf("%s: %+v, want group %s", user, e, want)
		}
	}
}
