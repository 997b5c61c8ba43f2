package httpproxy

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
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

// TestDNSBlockPageUsesIdentity: the block page a browser reaches after
// the resolver's block answer decides as the resolver did, with the
// identity table's user and group (a pupil on the staff network), and
// names them; before, it decided by the address alone and said nothing
// was blocked.
func TestDNSBlockPageUsesIdentity(t *testing.T) {
	tb := identity.New(identity.Options{Rules: []identity.Rule{{Match: "*@pupils.example", Group: "students"}}})
	e := newEnv(t, envOpts{identity: tb})
	tb.Set(identity.Mapping{Addr: netip.MustParseAddr("127.0.0.2"), Source: identity.SourceRADIUS, User: "amira@pupils.example",
		Expires: time.Now().Add(time.Hour)})
	admin := &http.Server{Handler: e.s.AdminHandler()}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = admin.Serve(ln) }()
	t.Cleanup(func() { admin.Close() })
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext}}
	req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/play", nil)
	req.Host = "games.test" // blocked for students, not for staff (127.0.0.2's network)
	req.Header.Set("Accept", browserAccept)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "amira@pupils.example") {
		t.Fatalf("block page: %d\n%s", resp.StatusCode, b)
	}
}
