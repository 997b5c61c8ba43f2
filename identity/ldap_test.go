package identity_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-filter/gatehouse/identity"
	"github.com/gatehouse-filter/gatehouse/identity/ldaptest"
)

func newLDAP(srv *ldaptest.Server, url string) *identity.LDAP {
	return &identity.LDAP{
		URL: url, RootCAs: srv.CA, BaseDN: "ou=people," + ldaptest.Base, UserFilter: "(uid=%s)",
		ServiceDN: ldaptest.ServiceDN, ServicePassword: ldaptest.ServicePass,
		Groups:      []identity.LDAPGroup{{DN: ldaptest.StaffDN, Group: "staff"}, {DN: strings.ToUpper(ldaptest.StudentsDN), Group: "students"}},
		DisplayAttr: "displayName", YearAttr: "employeeType", ClassAttr: "departmentNumber",
		TTL: 10 * time.Minute, Timeout: 5 * time.Second,
	}
}

func TestLDAPLogin(t *testing.T) {
	srv := ldaptest.Start(t)
	for _, tc := range []struct {
		name string
		mod  func(l *identity.LDAP)
	}{
		{"ldaps", func(l *identity.LDAP) {}},
		{"starttls", func(l *identity.LDAP) { l.URL, l.StartTLS = srv.LDAPURL, true }},
		{"bind-dn-template", func(l *identity.LDAP) {
			l.ServiceDN, l.ServicePassword, l.UserFilter = "", "", ""
			l.BindDN = "uid=%s,ou=people," + ldaptest.Base
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLDAP(srv, srv.LDAPSURL)
			tc.mod(l)
			p, err := l.Login("amira.khan", "Amira-pw-1")
			if err != nil {
				t.Fatal(err)
			}
			want := identity.Person{Display: "Amira Khan", Year: "Year 8", Class: "8B", Group: "students", User: "amira.khan"}
			if p != want {
				t.Fatalf("got %+v, want %+v", p, want)
			}
			if got, ok := l.Person("Amira.Khan"); !ok || got != want {
				t.Fatalf("Person after login: %+v %v", got, ok)
			}
			p, err = l.Login("mr.jones", "Jones-pw-2")
			if err != nil || p.Group != "staff" || p.Display != "Tom Jones" {
				t.Fatalf("staff: %+v %v", p, err)
			}
			if _, err := l.Login("amira.khan", "wrong"); !errors.Is(err, identity.ErrBadLogin) {
				t.Fatalf("wrong password: %v", err)
			}
			if _, err := l.Login("nobody", "x"); !errors.Is(err, identity.ErrBadLogin) {
				t.Fatalf("unknown user: %v", err)
			}
		})
	}
}

// A pupil typing filter or DN syntax as a user name gets nothing: no
// entry matches, no bind is made as anyone.
func TestLDAPInjection(t *testing.T) {
	srv := ldaptest.Start(t)
	l := newLDAP(srv, srv.LDAPSURL)
	for _, name := range []string{"*", "*)(uid=*", "amira.khan)(|(uid=*", "amira*", "x\x00", "uid=amira.khan,ou=people," + ldaptest.Base} {
		for _, pw := range []string{"Amira-pw-1", "Jones-pw-2", ldaptest.ServicePass, "x"} {
			if p, err := l.Login(name, pw); !errors.Is(err, identity.ErrBadLogin) {
				t.Errorf("Login(%q) = %+v, %v; want ErrBadLogin", name, p, err)
			}
		}
	}
	// Escaping alone (past the refusal of specials) finds nobody either.
	dnl := newLDAP(srv, srv.LDAPSURL)
	dnl.ServiceDN, dnl.UserFilter = "", ""
	dnl.BindDN = "uid=%s,ou=people," + ldaptest.Base
	for _, name := range []string{"amira.khan,ou=people", "x+uid=amira.khan", "amira.khan"} {
		if _, err := dnl.Login(name, ""); !errors.Is(err, identity.ErrBadLogin) {
			t.Errorf("empty password for %q: %v; want ErrBadLogin (an unauthenticated bind must not pass)", name, err)
		}
	}
	if _, err := dnl.Login("amira.khan,ou=people", "Amira-pw-1"); !errors.Is(err, identity.ErrBadLogin) {
		t.Errorf("DN injection: %v", err)
	}
}

func TestLDAPTLSVerification(t *testing.T) {
	srv := ldaptest.Start(t)
	for _, tc := range []struct{ name, url string }{{"ldaps", srv.LDAPSURL}, {"starttls", srv.LDAPURL}} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLDAP(srv, tc.url)
			l.StartTLS = tc.url == srv.LDAPURL
			l.RootCAs = nil // the system roots do not know the test CA
			_, err := l.Login("amira.khan", "Amira-pw-1")
			if err == nil || errors.Is(err, identity.ErrBadLogin) || !strings.Contains(err.Error(), "certificate") {
				t.Fatalf("got %v, want a certificate error", err)
			}
			if l.Binds() != 0 {
				t.Fatalf("%d binds sent over an unverified connection", l.Binds())
			}
		})
	}
	l := newLDAP(srv, srv.LDAPURL) // ldap:// with neither StartTLS nor Plain
	if _, err := l.Login("amira.khan", "Amira-pw-1"); err == nil || !strings.Contains(err.Error(), "clear") {
		t.Fatalf("plain ldap:// without plain: %v", err)
	}
	if l.Binds() != 0 {
		t.Fatal("a bind was sent in clear")
	}
}

func TestLDAPCache(t *testing.T) {
	srv := ldaptest.Start(t)
	now := time.Now()
	l := newLDAP(srv, srv.LDAPSURL)
	l.Now = func() time.Time { return now }
	before := srv.Binds(t)
	if _, err := l.Login("amira.khan", "Amira-pw-1"); err != nil {
		t.Fatal(err)
	}
	afterFirst := srv.Binds(t)
	if _, err := l.Login("amira.khan", "Amira-pw-1"); err != nil {
		t.Fatal(err)
	}
	afterSecond := srv.Binds(t)
	// Each Binds read binds once itself.
	if got := afterFirst - before - 1; got != 2 {
		t.Fatalf("first login: %d binds on the server, want 2 (service, user)", got)
	}
	if got := afterSecond - afterFirst - 1; got != 0 {
		t.Fatalf("cached login: %d binds on the server, want 0", got)
	}
	// A wrong password is never answered from the cache, nor cached.
	for range 2 {
		if _, err := l.Login("amira.khan", "guess"); !errors.Is(err, identity.ErrBadLogin) {
			t.Fatalf("wrong password: %v", err)
		}
	}
	if got := l.Binds(); got != 6 {
		t.Fatalf("%d binds, want 6 (each wrong password is asked)", got)
	}
	// The failure ended the remembered login: the right password binds again.
	if _, ok := l.Person("amira.khan"); ok {
		t.Fatal("Person still remembered after a failed bind")
	}
	if _, err := l.Login("amira.khan", "Amira-pw-1"); err != nil || l.Binds() != 8 {
		t.Fatalf("after failure: %v, %d binds", err, l.Binds())
	}
	// Past the TTL the login is asked again.
	now = now.Add(11 * time.Minute)
	if _, ok := l.Person("amira.khan"); ok {
		t.Fatal("Person past the TTL")
	}
	if _, err := l.Login("amira.khan", "Amira-pw-1"); err != nil || l.Binds() != 10 {
		t.Fatalf("past TTL: %v, %d binds", err, l.Binds())
	}
}

// The cache holds at most MaxCached users.
func TestLDAPCacheBound(t *testing.T) {
	srv := ldaptest.Start(t)
	l := newLDAP(srv, srv.LDAPSURL)
	l.MaxCached = 1
	if _, err := l.Login("amira.khan", "Amira-pw-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Login("mr.jones", "Jones-pw-2"); err != nil {
		t.Fatal(err)
	}
	_, a := l.Person("amira.khan")
	_, j := l.Person("mr.jones")
	if a || !j {
		t.Fatalf("remembered amira %v, jones %v; want only the newest", a, j)
	}
}

// A wrong service account password is the directory's problem, not the
// user's: an error naming the account's bind, never either password.
func TestLDAPServiceBindError(t *testing.T) {
	srv := ldaptest.Start(t)
	l := newLDAP(srv, srv.LDAPSURL)
	l.ServicePassword = "stale-service-pw"
	_, err := l.Login("amira.khan", "Amira-pw-1")
	if err == nil || errors.Is(err, identity.ErrBadLogin) || !strings.Contains(err.Error(), "service account") {
		t.Fatalf("got %v, want a service account error", err)
	}
	if strings.Contains(err.Error(), "stale-service-pw") || strings.Contains(err.Error(), "Amira-pw-1") {
		t.Fatalf("the error shows a password: %v", err)
	}
	if _, ok := l.Person("amira.khan"); ok {
		t.Fatal("remembered a login the directory did not check")
	}
}

// TestLDAPAdopt: a reload's new directory takes over the remembered
// logins: a new group mapping applies to them without a bind; with
// recheck, or past the new TTL, the next login binds again.
func TestLDAPAdopt(t *testing.T) {
	srv := ldaptest.Start(t)
	old := newLDAP(srv, srv.LDAPSURL)
	if _, err := old.Login("amira.khan", "Amira-pw-1"); err != nil {
		t.Fatal(err)
	}
	regrouped := newLDAP(srv, srv.LDAPSURL)
	regrouped.Groups = []identity.LDAPGroup{{DN: ldaptest.StudentsDN, Group: "year8"}}
	if g := regrouped.Adopt(old, false); g["amira.khan"] != "year8" {
		t.Fatalf("Adopt's groups: %v", g)
	}
	p, err := regrouped.Login("amira.khan", "Amira-pw-1")
	if err != nil || p.Group != "year8" || p.Display != "Amira Khan" || regrouped.Binds() != 0 {
		t.Fatalf("adopted login: %+v %v, %d binds", p, err, regrouped.Binds())
	}
	if _, err := regrouped.Login("amira.khan", "wrong"); !errors.Is(err, identity.ErrBadLogin) {
		t.Fatalf("a wrong password after Adopt: %v", err)
	}

	rechecked := newLDAP(srv, srv.LDAPURL)
	rechecked.StartTLS = true
	rechecked.Adopt(old, true)
	if p, ok := rechecked.Person("amira.khan"); !ok || p.Display != "Amira Khan" {
		t.Fatalf("a login to check again still names the user: %+v %v", p, ok)
	}
	if _, err := rechecked.Login("amira.khan", "Amira-pw-1"); err != nil || rechecked.Binds() == 0 {
		t.Fatalf("recheck: %v, %d binds", err, rechecked.Binds())
	}

	short := newLDAP(srv, srv.LDAPSURL)
	short.TTL = 0
	short.Adopt(old, false)
	if _, ok := short.Person("amira.khan"); ok {
		t.Fatal("a login past the new TTL is still remembered")
	}
}
