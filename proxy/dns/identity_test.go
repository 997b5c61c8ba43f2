package dns

import (
	"net/netip"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/gatehouse-filter/gatehouse/identity"
)

type people map[string]identity.Person

func (p people) Person(u string) (identity.Person, bool) { v, ok := p[u]; return v, ok }

// TestIdentityTableNamesUser: a RADIUS mapping for the staff address names
// the pupil (display name, year, class, source), their group (from the
// table's rule) decides, and the lease names the device; once the session
// ends the next event names only the address and the network decides.
func TestIdentityTableNamesUser(t *testing.T) {
	var tb *identity.Table
	ts := startServer(t, func(o *Options) {
		tb = identity.New(identity.Options{Now: o.Now,
			Rules:     []identity.Rule{{Match: "*@pupils.example", Group: "students"}},
			Directory: people{"amira@pupils.example": {Display: "Amira Khan", Year: "Year 8", Class: "8B"}}})
		o.Identity = tb
	})
	at := netip.MustParseAddr(staff)
	exp := ts.clock.now().Add(time.Hour)
	tb.Set(identity.Mapping{Addr: at, Source: identity.SourceLease, Device: "LIB-LAPTOP-12", MAC: "3c:22:fb:12:34:56", Expires: exp})
	tb.Set(identity.Mapping{Addr: at, Source: identity.SourceRADIUS, Session: "s1", User: "amira@pupils.example", Expires: exp})
	// staff's network allows gambling; Amira's group (students) does not.
	if r := ask(t, "udp", ts.udp, staff, "gamble.example.", mdns.TypeA, true); r.Rcode != mdns.RcodeNameError {
		t.Fatalf("the table's group did not decide: %v", r)
	}
	ev := waitEvents(t, ts, 1)[0]
	if ev.User != "amira@pupils.example" || ev.Display != "Amira Khan" || ev.Year != "Year 8" || ev.Class != "8B" ||
		ev.IDSource != "radius" || ev.Group != "students" || ev.Device != "LIB-LAPTOP-12" {
		t.Fatalf("event: %+v", ev)
	}
	tb.Remove(at, identity.SourceRADIUS, "s1")
	if r := ask(t, "udp", ts.udp, staff, "gamble.example.", mdns.TypeA, true); r.Rcode != mdns.RcodeSuccess {
		t.Fatalf("after Stop the network should decide: %v", r)
	}
	if r := ask(t, "udp", ts.udp, staff, "porn.example.", mdns.TypeA, true); r.Rcode != mdns.RcodeNameError {
		t.Fatalf("staff: %v", r)
	}
	ev = waitEvents(t, ts, 2)[1]
	if ev.User != "" || ev.Display != "" || ev.Device != "LIB-LAPTOP-12" || ev.IDSource != "dhcp" || ev.Group != "staff" {
		t.Fatalf("after Stop: %+v", ev)
	}
	// The lease ends: only the address.
	ts.clock.advance(2 * time.Hour)
	if r := ask(t, "udp", ts.udp, staff, "www.porn.example.", mdns.TypeA, true); r.Rcode != mdns.RcodeNameError {
		t.Fatalf("staff: %v", r)
	}
	ev = waitEvents(t, ts, 3)[2]
	if ev.User != "" || ev.Device != "" || ev.IDSource != "address" {
		t.Fatalf("after the lease: %+v", ev)
	}
}
