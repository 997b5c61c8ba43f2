package httpproxy

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-filter/gatehouse/identity"
	"github.com/gatehouse-filter/gatehouse/identity/ldaptest"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// ldapEnv is a proxy whose logins are checked against a real slapd:
// Students → students, Staff → staff.
func ldapEnv(t *testing.T) (*env, *identity.LDAP, *identity.Table, *ldaptest.Server) {
	srv := ldaptest.Start(t)
	l := &identity.LDAP{
		URL: srv.LDAPSURL, RootCAs: srv.CA, BaseDN: "ou=people," + ldaptest.Base, UserFilter: "(uid=%s)",
		ServiceDN: ldaptest.ServiceDN, ServicePassword: ldaptest.ServicePass,
		Groups:      []identity.LDAPGroup{{DN: ldaptest.StaffDN, Group: "staff"}, {DN: ldaptest.StudentsDN, Group: "students"}},
		DisplayAttr: "displayName", YearAttr: "employeeType", ClassAttr: "departmentNumber",
		TTL: 10 * time.Minute, Timeout: 5 * time.Second,
	}
	tb := identity.New(identity.Options{Directory: l})
	return newEnv(t, envOpts{identity: tb, directory: l}), l, tb, srv
}

// TestProxyLDAPLogin: a directory login through the proxy; the
// directory's group decides (a pupil logging in on the staff network is
// blocked from games, a teacher is not) and events and the identity table
// (which the DNS resolver reads) name the pupil with display name, year
// and class.
func TestProxyLDAPLogin(t *testing.T) {
	e, l, tb, _ := ldapEnv(t)
	amira := e.client("127.0.0.2", "amira.khan", "Amira-pw-1")
	if resp, _ := get(t, amira, e.originURL("site.test", "/")); resp.StatusCode != http.StatusOK {
		t.Fatalf("good password: %d", resp.StatusCode)
	}
	w := tb.Lookup(netip.MustParseAddr("127.0.0.2"), time.Now().UnixNano())
	if w == nil || w.User != "amira.khan" || w.Display != "Amira Khan" || w.Year != "Year 8" || w.Class != "8B" ||
		w.Group != "students" || w.Source != identity.SourceLogin {
		t.Fatalf("table entry: %+v", w)
	}
	// games.test is blocked for students, allowed for staff (whose
	// network 127.0.0.2 is): the directory's group decides.
	if resp, _ := get(t, amira, e.originURL("games.test", "/")); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a Students member reached games: %d", resp.StatusCode)
	}
	ev := e.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Name == "games.test" })
	if ev.User != "amira.khan" || ev.Display != "Amira Khan" || ev.Year != "Year 8" || ev.Class != "8B" || ev.Group != "students" || ev.IDSource != "login" {
		t.Fatalf("event: %+v", ev)
	}
	// The directory compares names without case; the login is recorded
	// in lower case, so a pupil typing her name in capitals is still
	// herself (her clients.users entry, her incidents).
	if resp, _ := get(t, e.client("127.0.0.6", "AMIRA.Khan", "Amira-pw-1"), e.originURL("games.test", "/")); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("capitals: %d", resp.StatusCode)
	}
	if ev := e.sink.waitEvent(t, func(ev reports.Event) bool {
		return ev.Name == "games.test" && ev.Client == netip.MustParseAddr("127.0.0.6")
	}); ev.User != "amira.khan" {
		t.Fatalf("capitals recorded as %q", ev.User)
	}
	jones := e.client("127.0.0.3", "mr.jones", "Jones-pw-2")
	if resp, _ := get(t, jones, e.originURL("games.test", "/")); resp.StatusCode != http.StatusOK {
		t.Fatalf("a Staff member was blocked from games: %d", resp.StatusCode)
	}
	// The users file still answers for the names it lists.
	binds := l.Binds()
	if resp, _ := get(t, e.client("127.0.0.4", "jsmith", password), e.originURL("site.test", "/")); resp.StatusCode != http.StatusOK {
		t.Fatalf("users file login beside the directory: %d", resp.StatusCode)
	}
	if l.Binds() != binds {
		t.Fatal("a users-file login asked the directory")
	}
	for _, tc := range []struct{ user, pass string }{
		{"amira.khan", "wrong"},
		{"nobody", "Amira-pw-1"},
		{"*)(uid=*", "Amira-pw-1"},
		{"*", "Amira-pw-1"},
		{"amira*", "Amira-pw-1"},
		{"amira.khan", ""},
	} {
		if resp, _ := get(t, e.client("127.0.0.5", tc.user, tc.pass), e.originURL("site.test", "/")); resp.StatusCode != http.StatusProxyAuthRequired {
			t.Errorf("login %q/%q: %d, want 407", tc.user, tc.pass, resp.StatusCode)
		}
	}
}

// TestProxyLDAPCachedBind: a browser sends its login with every request;
// only the first is a bind on the directory (counted by slapd itself).
func TestProxyLDAPCachedBind(t *testing.T) {
	e, _, _, srv := ldapEnv(t)
	amira := e.client("127.0.0.2", "amira.khan", "Amira-pw-1")
	before := srv.Binds(t)
	if resp, _ := get(t, amira, e.originURL("site.test", "/")); resp.StatusCode != http.StatusOK {
		t.Fatal(resp.StatusCode)
	}
	first := srv.Binds(t)
	for range 3 {
		if resp, _ := get(t, amira, e.originURL("site.test", "/")); resp.StatusCode != http.StatusOK {
			t.Fatal(resp.StatusCode)
		}
	}
	after := srv.Binds(t)
	if got := first - before - 1; got != 2 {
		t.Fatalf("first login: %d binds, want 2 (service account, user)", got)
	}
	if got := after - first - 1; got != 0 {
		t.Fatalf("three more requests: %d binds, want 0 (cached)", got)
	}
}

// TestProxyLDAPFailuresLimited: wrong logins count per address; the
// eleventh within a minute is refused without asking the directory, even
// with the right password, and another address is not affected.
func TestProxyLDAPFailuresLimited(t *testing.T) {
	e, l, _, _ := ldapEnv(t)
	for i := range maxLoginFailures {
		c := e.client("127.0.0.2", "mr.jones", fmt.Sprint("guess", i))
		if resp, _ := get(t, c, e.originURL("site.test", "/")); resp.StatusCode != http.StatusProxyAuthRequired {
			t.Fatalf("guess %d: %d", i, resp.StatusCode)
		}
		c.CloseIdleConnections()
	}
	binds := l.Binds()
	resp, body := get(t, e.client("127.0.0.2", "mr.jones", "Jones-pw-2"), e.originURL("site.test", "/"))
	if resp.StatusCode != http.StatusProxyAuthRequired || !strings.Contains(body, "Too many wrong logins") {
		t.Fatalf("after %d wrong logins: %d %q", maxLoginFailures, resp.StatusCode, body)
	}
	if l.Binds() != binds {
		t.Fatal("a blocked address's login reached the directory")
	}
	if resp, _ := get(t, e.client("127.0.0.3", "mr.jones", "Jones-pw-2"), e.originURL("site.test", "/")); resp.StatusCode != http.StatusOK {
		t.Fatalf("another address: %d", resp.StatusCode)
	}
}

// TestProxyLDAPUnverified: a directory whose certificate does not verify
// is never sent a password; the login gets 503, not a silent 407 or 200.
func TestProxyLDAPUnverified(t *testing.T) {
	srv := ldaptest.Start(t)
	l := &identity.LDAP{URL: srv.LDAPSURL, BaseDN: ldaptest.Base, UserFilter: "(uid=%s)",
		ServiceDN: ldaptest.ServiceDN, ServicePassword: ldaptest.ServicePass, TTL: time.Minute, Timeout: 5 * time.Second}
	e := newEnv(t, envOpts{directory: l})
	c := e.dial("127.0.0.2")
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	auth := base64.StdEncoding.EncodeToString([]byte("amira.khan:Amira-pw-1"))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: site.test\r\nProxy-Authorization: Basic %s\r\n\r\n", e.originURL("site.test", "/"), auth)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", resp.StatusCode)
	}
	if l.Binds() != 0 {
		t.Fatal("bound over an unverified connection")
	}
	if _, err := l.Login("amira.khan", "Amira-pw-1"); err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Fatalf("error %v", err)
	}
}

// TestProxyDirectoryDownLogBounded: while the directory cannot be asked,
// every login it is asked about fails, and a pupil sending logins with
// made-up names (each one asked again) must not write a log line per
// request: the line comes at most every 10 s, with how many failed since.
func TestProxyDirectoryDownLogBounded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close() // nothing listens there: the directory is down
	l := &identity.LDAP{URL: "ldaps://" + closed, BaseDN: ldaptest.Base, UserFilter: "(uid=%s)",
		ServiceDN: ldaptest.ServiceDN, ServicePassword: ldaptest.ServicePass, TTL: time.Minute, Timeout: 2 * time.Second}
	e := newEnv(t, envOpts{directory: l})
	var logs syncBuffer
	e.s.log = slog.New(slog.NewTextHandler(&logs, nil))
	const n = 40
	c := e.dial("127.0.0.1")
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	for i := range n {
		auth := base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "made.up%d:pw", i))
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: site.test\r\nProxy-Authorization: Basic %s\r\n\r\n", e.originURL("site.test", "/"), auth)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("login %d with the directory down: %d, want 503", i, resp.StatusCode)
		}
	}
	got := strings.Count(logs.String(), "directory login could not be checked")
	if got != 1 {
		t.Fatalf("%d requests with the directory down wrote %d log lines, want 1:\n%s", n, got, logs.String())
	}
	if !strings.Contains(logs.String(), closed) {
		t.Errorf("the line does not name the directory's server %s:\n%s", closed, logs.String())
	}
}
