package identity

import (
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"layeh.com/radius/rfc2866"
)

// An address handed to another device must not keep naming the person
// who signed in (or logged in, or had an 802.1X session) from the device
// that held it before: a pupil whose phone is given the address a
// teacher's laptop had would otherwise browse as the teacher, in the
// teacher's group, and the DSL's alerts would name the teacher.
func TestAddressReusedByAnotherDevice(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dnsmasq.leases")
	c := newClock()
	mod := c.now()
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		mod = mod.Add(time.Second)
		os.Chtimes(path, mod, mod)
	}
	end := c.at(8 * time.Hour).Unix()
	lease := func(mac, addr, host string) string {
		return strconv.FormatInt(end, 10) + " " + mac + " " + addr + " " + host + " *\n"
	}
	const teacherMAC, pupilMAC, otherMAC, laptopMAC = "3c:22:fb:00:00:01", "3c:22:fb:00:00:02", "3c:22:fb:00:00:03", "3c:22:fb:00:00:04"
	a, b := netip.MustParseAddr("10.1.4.20"), netip.MustParseAddr("10.1.4.21")
	write(lease(teacherMAC, "10.1.4.20", "teacher-laptop") + lease(otherMAC, "10.1.4.21", "staff-laptop"))
	tb := New(Options{Now: c.now, Rules: []Rule{{Match: "*@staff.example", Group: "staff"}, {Match: "*@students.example", Group: "students"}}})
	l := &Leases{Table: tb, Files: []LeaseFile{{Path: path, Format: FormatDnsmasq}}, Now: c.now}
	if errs := l.Poll(); len(errs) != 0 {
		t.Fatal(errs)
	}
	r := startRADIUSAt(t, tb, c.now, "127.0.0.1/32")
	// The teacher signs in on the page from 10.1.4.20; a colleague on
	// 10.1.4.21 has an 802.1X session and a proxy login.
	tb.Set(Mapping{Addr: a, Source: SourceSignin, Session: "sig1", User: "t.jones@staff.example", Expires: c.at(8 * time.Hour)})
	exchange(t, r, acct(testSecret, rfc2866.AcctStatusType_Value_Start, "k.smith@staff.example", "10.1.4.21", "S1", otherMAC))
	tb.Set(Mapping{Addr: b, Source: SourceLogin, User: "k.smith@staff.example", Expires: c.at(8 * time.Hour)})
	who := func(addr netip.Addr) *Entry { return tb.Lookup(addr, c.now().UnixNano()) }
	if e := who(a); e == nil || e.User != "t.jones@staff.example" || e.Group != "staff" || e.MAC != teacherMAC {
		t.Fatalf("teacher's sign-in: %+v", e)
	}
	if e := who(b); e == nil || e.User != "k.smith@staff.example" || e.Source != SourceLogin {
		t.Fatalf("colleague's login: %+v", e)
	}
	// The same devices renew their leases: nothing changes.
	c.add(time.Minute)
	write(lease(teacherMAC, "10.1.4.20", "teacher-laptop") + lease(otherMAC, "10.1.4.21", "staff-laptop"))
	l.Poll()
	if e := who(a); e == nil || e.User != "t.jones@staff.example" {
		t.Fatalf("after a renewal: %+v", e)
	}
	// The teacher leaves without signing out; the DHCP server gives
	// 10.1.4.20 to a pupil's phone.
	c.add(time.Hour)
	write(lease(pupilMAC, "10.1.4.20", "pupil-phone") + lease(otherMAC, "10.1.4.21", "staff-laptop"))
	l.Poll()
	if e := who(a); e == nil || e.User != "" || e.Device != "pupil-phone" || e.Group != "" {
		t.Fatalf("a pupil's phone at the teacher's old address is named as %+v", e)
	}
	// The colleague's laptop leaves (its Stop is lost) and a pupil's
	// laptop starts an 802.1X session at 10.1.4.21 before the lease file
	// is read again: the pupil, not the colleague's login, names it.
	exchange(t, r, acct(testSecret, rfc2866.AcctStatusType_Value_Start, "amira@students.example", "10.1.4.21", "S2", laptopMAC))
	if e := who(b); e == nil || e.User != "amira@students.example" || e.Group != "students" || e.Source != SourceRADIUS {
		t.Fatalf("a pupil's 802.1X session at the colleague's old address is named as %+v", e)
	}
	// A sign-in made before the device was known binds to the first
	// device seen at the address.
	cc := netip.MustParseAddr("10.1.4.22")
	tb.Set(Mapping{Addr: cc, Source: SourceSignin, Session: "sig2", User: "t.jones@staff.example", Expires: c.at(8 * time.Hour)})
	write(lease(pupilMAC, "10.1.4.20", "pupil-phone") + lease(laptopMAC, "10.1.4.21", "pupil-laptop") + lease(teacherMAC, "10.1.4.22", "teacher-laptop"))
	l.Poll()
	if e := who(cc); e == nil || e.User != "t.jones@staff.example" || e.MAC != teacherMAC {
		t.Fatalf("sign-in before the lease: %+v", e)
	}
	write(lease(pupilMAC, "10.1.4.20", "pupil-phone") + lease(laptopMAC, "10.1.4.21", "pupil-laptop") + lease(otherMAC, "10.1.4.22", "staff-laptop"))
	l.Poll()
	if e := who(cc); e == nil || e.User != "" {
		t.Fatalf("after the address went to another device: %+v", e)
	}
}

// TestRADIUSSessionMovesOrStopsWithoutAddress: an 802.1X session whose
// Interim-Update reports a new address no longer names the old one (the
// DHCP server may give it to another device), and a Stop without
// Framed-IP-Address (some controllers leave it out) ends the session at
// the address it had. Before, both left the user named at the old
// address until identity.radius.timeout (2 h by default).
func TestRADIUSSessionMovesOrStopsWithoutAddress(t *testing.T) {
	c := newClock()
	tb := New(Options{Now: c.now})
	r := startRADIUSAt(t, tb, c.now, "127.0.0.1/32")
	who := func(a string) string {
		if e := tb.Lookup(netip.MustParseAddr(a), c.now().UnixNano()); e != nil {
			return e.User
		}
		return ""
	}
	exchange(t, r, acct(testSecret, rfc2866.AcctStatusType_Value_Start, "amira@pupils.example", "10.9.8.7", "S1", "3c:22:fb:12:34:56"))
	exchange(t, r, acct(testSecret, rfc2866.AcctStatusType_Value_Start, "k.smith@staff.example", "10.9.8.20", "S2", "3c:22:fb:12:34:57"))
	exchange(t, r, acct(testSecret, rfc2866.AcctStatusType_Value_InterimUpdate, "amira@pupils.example", "10.9.8.8", "S1", "3c:22:fb:12:34:56"))
	if who("10.9.8.8") != "amira@pupils.example" || who("10.9.8.7") != "" {
		t.Fatalf("after the session moved: old %q, new %q", who("10.9.8.7"), who("10.9.8.8"))
	}
	exchange(t, r, acct(testSecret, rfc2866.AcctStatusType_Value_Stop, "k.smith@staff.example", "", "S2", "3c:22:fb:12:34:57"))
	if u := who("10.9.8.20"); u != "" {
		t.Fatalf("a Stop without Framed-IP-Address left %q named", u)
	}
	if who("10.9.8.8") != "amira@pupils.example" {
		t.Fatal("another session's Stop ended this one")
	}
	// A Stop naming the address as well still works, and ends the session's record.
	exchange(t, r, acct(testSecret, rfc2866.AcctStatusType_Value_Stop, "amira@pupils.example", "10.9.8.8", "S1", ""))
	if who("10.9.8.8") != "" {
		t.Fatal("Stop did not end the session")
	}
}
