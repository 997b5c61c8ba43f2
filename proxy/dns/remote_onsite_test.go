package dns

import (
	"net/http"
	"net/netip"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/gatehouse-filter/gatehouse/identity"
)

// TestRemoteTokenOnSiteNamesThePerson: a pupil on the school Wi-Fi (named
// by RADIUS) who points their phone's DoH at the off-site listener with a
// device token (read from a school laptop's settings) is still named and
// filtered as themselves. Before, the token's device was named instead of
// the pupil ("only the device is known") and its group decided: a staff
// laptop's token gave the pupil staff's policy on site, and the DSL's
// alert never named them. Off-site (an address the table does not name)
// the token decides as before.
func TestRemoteTokenOnSiteNamesThePerson(t *testing.T) {
	var tb *identity.Table
	rt := startRemote(t, func(o *Options) {
		tb = identity.New(identity.Options{Now: o.Now, Rules: []identity.Rule{{Match: "*@pupils.example", Group: "students"}}})
		o.Identity = tb
	})
	at := netip.MustParseAddr("127.0.0.1")
	tb.Set(identity.Mapping{Addr: at, Source: identity.SourceRADIUS, Session: "s1", User: "amira@pupils.example",
		MAC: "3c:22:fb:12:34:56", Expires: rt.clock.now().Add(time.Hour)})
	// gamble.example: blocked for students, allowed for staff.
	if code, m := rt.dohAsk(t, http.MethodPost, rt.staff, "gamble.example"); code != 200 || m.Rcode != mdns.RcodeNameError {
		t.Fatalf("a staff token on site gave the pupil staff's policy: %d %v", code, m)
	}
	ev := waitEvents(t, rt.testServer, 1)[0]
	if ev.User != "amira@pupils.example" || ev.Group != "students" || ev.IDSource != "radius" {
		t.Fatalf("event: %+v", ev)
	}
	// The address no longer named: the token decides again.
	tb.Remove(at, identity.SourceRADIUS, "s1")
	if code, m := rt.dohAsk(t, http.MethodPost, rt.staff, "gamble.example"); code != 200 || firstA(m) != "192.0.2.1" {
		t.Fatalf("staff token off-site: %d %v", code, m)
	}
	rt.noTokenIn(t)
}
