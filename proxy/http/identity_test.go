package httpproxy

import (
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/gatehouse-filter/gatehouse/identity"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// TestIdentityTableNamesProxyUser: a request without a login from an
// address the identity table maps (RADIUS) is decided by the user's group
// and its event names them, their device and the source; a proxy login
// is recorded in the table for login_ttl, so the DNS front door names
// the user too.
func TestIdentityTableNamesProxyUser(t *testing.T) {
	tb := identity.New(identity.Options{Rules: []identity.Rule{{Match: "*@staff.example", Group: "staff"}}})
	e := newEnv(t, envOpts{identity: tb})
	exp := time.Now().Add(time.Hour)
	at := netip.MustParseAddr("127.0.0.1")
	tb.Set(identity.Mapping{Addr: at, Source: identity.SourceRADIUS, User: "mr.jones@staff.example", Expires: exp})
	tb.Set(identity.Mapping{Addr: at, Source: identity.SourceLease, Device: "STAFF-LAPTOP-3", Expires: exp})
	// games.test is blocked for students (127.0.0.1's network), not for staff.
	if resp, _ := get(t, e.client("127.0.0.1", "", ""), e.originURL("games.test", "/")); resp.StatusCode != http.StatusOK {
		t.Fatalf("the table's group did not decide: %d", resp.StatusCode)
	}
	if resp, _ := get(t, e.client("127.0.0.1", "", ""), e.originURL("adult.test", "/")); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("adult.test: %d", resp.StatusCode)
	}
	ev := e.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Name == "adult.test" })
	if ev.User != "mr.jones@staff.example" || ev.Group != "staff" || ev.Device != "STAFF-LAPTOP-3" || ev.IDSource != "radius" {
		t.Fatalf("event: %+v", ev)
	}
	// A proxy login from 127.0.0.2 goes into the table.
	staff := e.client("127.0.0.2", "jsmith", password)
	if resp, _ := get(t, staff, e.originURL("site.test", "/")); resp.StatusCode != http.StatusOK {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	w := tb.Lookup(netip.MustParseAddr("127.0.0.2"), time.Now().UnixNano())
	if w == nil || w.User != "jsmith" || w.Source != identity.SourceLogin {
		t.Fatalf("login not in the table: %+v", w)
	}
}
