package httpproxy

import (
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/gatehouse-filter/gatehouse/identity"
)

// TestLoginEndsWhenAddressChangesDevice: a proxy login names its address
// only while the device it came from holds the address. Once the DHCP
// server gives the address to another device (a pupil's phone), neither
// the identity table nor the proxy's own record of logins (read by the
// resolver, the block page and the HTTPS block page's certificates) names
// the teacher there, and the teacher logging in again is recorded again.
func TestLoginEndsWhenAddressChangesDevice(t *testing.T) {
	tb := identity.New(identity.Options{Rules: []identity.Rule{{Match: "*@staff.example", Group: "staff"}}})
	e := newEnv(t, envOpts{identity: tb})
	at := netip.MustParseAddr("127.0.0.2")
	exp := time.Now().Add(8 * time.Hour)
	tb.Set(identity.Mapping{Addr: at, Source: identity.SourceLease, Session: "lease:f", Device: "STAFF-LAPTOP-3", MAC: "3c:22:fb:00:00:01", Expires: exp})
	staff := e.client("127.0.0.2", "jsmith", password)
	if resp, _ := get(t, staff, e.originURL("site.test", "/")); resp.StatusCode != http.StatusOK {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	if u := e.s.Logins().UserFor(at); u != "jsmith" {
		t.Fatalf("login not recorded: %q", u)
	}
	// The laptop leaves; the address is leased to a pupil's phone.
	tb.Set(identity.Mapping{Addr: at, Source: identity.SourceLease, Session: "lease:f", Device: "pupil-phone", MAC: "3c:22:fb:00:00:02", Expires: exp})
	if w := tb.Lookup(at, time.Now().UnixNano()); w == nil || w.User != "" {
		t.Fatalf("table names %+v", w)
	}
	if u := e.s.Logins().UserFor(at); u != "" {
		t.Fatalf("the proxy still names %q at an address another device holds", u)
	}
	if r := e.s.WhoRequest(at); r.User != "" || r.Group != "" {
		t.Fatalf("WhoRequest: %+v", r)
	}
	// The teacher logs in again (their laptop back at the address): named again at once.
	tb.Set(identity.Mapping{Addr: at, Source: identity.SourceLease, Session: "lease:f", Device: "STAFF-LAPTOP-3", MAC: "3c:22:fb:00:00:01", Expires: exp})
	if resp, _ := get(t, staff, e.originURL("site.test", "/")); resp.StatusCode != http.StatusOK {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	if w := tb.Lookup(at, time.Now().UnixNano()); w == nil || w.User != "jsmith" {
		t.Fatalf("second login not in the table: %+v", w)
	}
	if u := e.s.Logins().UserFor(at); u != "jsmith" {
		t.Fatalf("second login: %q", u)
	}
}
