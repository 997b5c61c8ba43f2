package httpproxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-filter/gatehouse/config"
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

// TestIdentityDecryptedRequests: a pupil the identity table names (RADIUS)
// on a network whose group is another: each request inside a decrypted
// CONNECT is decided by the pupil's group, as the CONNECT is, and its
// event names them. The table is asked per request: when the session
// ends, the next request on the same connection is the network's.
func TestIdentityDecryptedRequests(t *testing.T) {
	tb := identity.New(identity.Options{Rules: []identity.Rule{{Match: "*@pupils.example", Group: "students"}}})
	ie := newInspectEnvOpts(t, envOpts{identity: tb})
	at := netip.MustParseAddr("127.0.0.2")                                // staff's network
	ie.setDecrypt(config.DecryptAll, "site.test/secret")                  // students: one page denied
	ie.editGroup("staff", func(g *config.Group) { g.ProxyLogin = false }) // no login: the table names the pupil
	for _, h2 := range []bool{false, true} {
		tb.Set(identity.Mapping{Addr: at, Source: identity.SourceRADIUS, User: "amira@pupils.example", Expires: time.Now().Add(time.Hour)})
		tr := &http.Transport{
			Proxy:             http.ProxyURL(&url.URL{Scheme: "http", Host: ie.addr}),
			DialContext:       (&net.Dialer{LocalAddr: &net.TCPAddr{IP: at.AsSlice()}, Timeout: 2 * time.Second}).DialContext,
			TLSClientConfig:   &tls.Config{RootCAs: ie.school},
			ForceAttemptHTTP2: h2,
		}
		t.Cleanup(tr.CloseIdleConnections)
		c := &http.Client{Transport: browser{tr}, Timeout: 5 * time.Second}
		u := ie.url("site.test", fmt.Sprintf("/secret/h2-%v", h2)) // distinct, so not collapsed
		hits := ie.hits.Load()
		if resp, body := get(t, c, u); resp.StatusCode != http.StatusForbidden || ie.hits.Load() != hits {
			t.Fatalf("h2=%v: the students' denied page: %d (the site asked %d times) %.80q", h2, resp.StatusCode, ie.hits.Load()-hits, body)
		}
		ev := ie.sink.waitEvent(t, func(ev reports.Event) bool { return ev.URL == u })
		if ev.Action != "block" || ev.User != "amira@pupils.example" || ev.Group != "students" || ev.IDSource != "radius" {
			t.Errorf("h2=%v: event %+v", h2, ev)
		}
		// The session ends (a RADIUS Stop); the connection stays.
		tb.Remove(at, identity.SourceRADIUS, "")
		reused := false
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }})
		req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if !reused {
			t.Errorf("h2=%v: the second request took a new connection", h2)
		}
		if resp.StatusCode != http.StatusOK {
			t.Errorf("h2=%v: after the session ended: %d, want 200 (staff's network)", h2, resp.StatusCode)
		}
	}
}

// TestIdentityTransparent: a pupil the identity table names (RADIUS) on a
// network whose group is more lenient is decided by the pupil's group on
// the transparent listeners too (no login there), for port 80, a blocked
// name on 443 and each request on a decrypted 443 connection, and the
// events name them.
func TestIdentityTransparent(t *testing.T) {
	tb := identity.New(identity.Options{Rules: []identity.Rule{{Match: "*@pupils.example", Group: "students"}}})
	m, pool := schoolCA(t)
	te := newTPEnv(t, envOpts{identity: tb, certs: m}, true)
	origins := x509.NewCertPool()
	origins.AddCert(te.tlsOrig.Certificate())
	te.s.roots = origins // the site's own CA, as proxy.upstream_ca_file gives it
	// transparent.allow admits 127.0.0.1 only: make it staff's network.
	te.editGroup("students", func(g *config.Group) { g.Networks = []netip.Prefix{netip.MustParsePrefix("127.0.0.3/32")} })
	te.editGroup("staff", func(g *config.Group) {
		g.Networks, g.ProxyLogin = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, false
	})
	tb.Set(identity.Mapping{Addr: netip.MustParseAddr("127.0.0.1"), Source: identity.SourceRADIUS, User: "amira@pupils.example",
		Expires: time.Now().Add(time.Hour)})
	named := func(ev reports.Event) bool {
		return ev.User == "amira@pupils.example" && ev.Group == "students" && ev.IDSource == "radius"
	}
	// Port 80: games.test is blocked for students, not for staff.
	resp, body := get(t, te.redirected(te.httpAddr, "", nil), te.originURL("games.test", "/"))
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "amira@pupils.example") {
		t.Fatalf("port 80: %d %.80q", resp.StatusCode, body)
	}
	if ev := te.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Source == "http" }); !named(ev) {
		t.Errorf("port 80: event %+v", ev)
	}
	// Port 443: the block page over HTTPS (students decrypt blocks).
	c := te.redirected(te.tlsAddr, "", pool)
	resp, err := c.Get("https://games.test/")
	if err != nil {
		t.Fatalf("port 443: %v (tunnelled as staff's?)", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("port 443: %d", resp.StatusCode)
	}
	if ev := te.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Source == "connect" }); !named(ev) {
		t.Errorf("port 443: event %+v", ev)
	}
	// Port 443 decrypted: each request is decided by the students' URL list.
	te.setDecrypt(config.DecryptAll, "example.com/secret")
	u := "https://example.com:" + te.s.tp.tlsPort
	if resp, _ := get(t, c, u+"/other"); resp.StatusCode != http.StatusOK {
		t.Fatalf("decrypted, another page: %d", resp.StatusCode)
	}
	if resp, _ := get(t, c, u+"/secret"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("decrypted, the students' denied page: %d", resp.StatusCode)
	}
	if ev := te.sink.waitEvent(t, func(ev reports.Event) bool { return ev.URL == u+"/secret" }); !named(ev) {
		t.Errorf("decrypted: event %+v", ev)
	}
}
