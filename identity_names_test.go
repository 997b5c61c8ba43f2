package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"layeh.com/radius"
	"layeh.com/radius/rfc2865"
	"layeh.com/radius/rfc2866"

	"github.com/gatehouse-filter/gatehouse/identity/ldaptest"
)

// proxyGetFrom sends a request for target through the proxy at proxy from
// the loopback address from (no login) and returns the status.
func proxyGetFrom(t *testing.T, proxy net.Addr, from, target string) int {
	t.Helper()
	u := &url.URL{Scheme: "http", Host: proxy.String()}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(u),
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(target)
	if err != nil {
		t.Fatalf("proxy request from %s: %v", from, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestStaticDeviceByMACGroup: a device listed in clients.devices by its
// MAC with a group (the reception kiosk in a stricter group than its
// network's) is filtered by that group once a DHCP lease gives it an
// address, on DNS and the proxy alike, as the config documents ("group,
// if set, overrides the group of the device's network"). Before, the MAC
// only named the device: the network's, more lenient, group decided.
func TestStaticDeviceByMACGroup(t *testing.T) {
	upstream := testUpstream(t)
	cfg := strings.Replace(identityConfig(upstream, "", `
  dhcp_leases:
    - {path: "{{dir}}/dnsmasq.leases", format: dnsmasq}
`), "  default_group: staff\n", `  default_group: staff
  devices:
    - {name: RECEPTION-KIOSK, mac: "3C-22-FB-12-34-56", group: students}
`, 1)
	path, _ := writeConfig(t, cfg, withIdentityLists(map[string]string{
		"dnsmasq.leases": "0 3c:22:fb:12:34:56 127.0.0.61 kiosk *\n0 3c:22:fb:12:34:57 127.0.0.62 staff-laptop *\n",
	}))
	s, _, _ := startServing(t, path)
	dnsAddr := s.dns.Addrs()[0].String()
	deadline := time.Now().Add(10 * time.Second)
	for s.identity.Lookup(netip.MustParseAddr("127.0.0.61"), time.Now().UnixNano()) == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if e := s.identity.Lookup(netip.MustParseAddr("127.0.0.61"), time.Now().UnixNano()); e == nil || e.Device != "RECEPTION-KIOSK" {
		t.Fatalf("the lease does not name the kiosk: %+v", e)
	}
	// The kiosk: the students' group decides (gambling blocked).
	if rc := askFrom(t, dnsAddr, "127.0.0.61", "bet.example"); rc != mdns.RcodeNameError {
		t.Errorf("DNS from the kiosk: rcode %d, want NXDOMAIN (its group, students, blocks gambling)", rc)
	}
	if code := proxyGetFrom(t, s.proxyAddr, "127.0.0.61", "http://www.bet.example/"); code != http.StatusForbidden {
		t.Errorf("proxy from the kiosk: %d, want 403", code)
	}
	// Another leased device on the same network: the network's group.
	if rc := askFrom(t, dnsAddr, "127.0.0.62", "bet.example"); rc != mdns.RcodeSuccess {
		t.Errorf("DNS from another device: rcode %d, want an answer (staff network)", rc)
	}
}

// radiusStart sends a RADIUS Accounting-Request Start naming user at
// from (session sid) with layeh's client, signed with e2eRADIUSSecret.
func radiusStart(t *testing.T, addr net.Addr, user, from, sid string) {
	t.Helper()
	p := radius.New(radius.CodeAccountingRequest, []byte(e2eRADIUSSecret))
	rfc2866.AcctStatusType_Set(p, rfc2866.AcctStatusType_Value_Start)
	rfc2865.UserName_SetString(p, user)
	rfc2865.FramedIPAddress_Set(p, net.ParseIP(from).To4())
	rfc2866.AcctSessionID_SetString(p, sid)
	rfc2865.NASIPAddress_Set(p, net.IPv4(127, 0, 0, 1).To4())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := radius.Exchange(ctx, p, addr.String()); err != nil {
		t.Fatal(err)
	}
}

// TestUserNamesWithoutCase: a user is one user whatever the case of the
// name a source gives. clients.users names "Amira.Khan" (config check
// already refuses "amira.khan" beside it as a duplicate); her Wi-Fi
// controller sends "AMIRA.KHAN", another pupil's sends "Jo.Bloggs" where
// clients.users has "jo.bloggs". Each is filtered by their clients.users
// group and named in one spelling (lower case, as directory logins and
// sign-ins are), so their events are one person's. Before, clients.users
// matched only the exact spelling: both pupils escaped their group to the
// staff network's.
func TestUserNamesWithoutCase(t *testing.T) {
	upstream := testUpstream(t)
	cfg := strings.Replace(identityConfig(upstream, "", `
  radius:
    listen: "127.0.0.1:0"
    secret: {file: "{{dir}}/radius-secret"}
    nas: [127.0.0.1/32]
`), "  default_group: staff\n", `  default_group: staff
  users:
    - {name: Amira.Khan, group: students}
    - {name: jo.bloggs, group: students}
`, 1)
	path, _ := writeConfig(t, cfg, withIdentityLists(map[string]string{"radius-secret": e2eRADIUSSecret + "\n"}))
	s, _, _ := startServing(t, path)
	dnsAddr := s.dns.Addrs()[0].String()
	radiusStart(t, s.radius.Addr(), "AMIRA.KHAN", "127.0.0.71", "case-1")
	radiusStart(t, s.radius.Addr(), "Jo.Bloggs", "127.0.0.72", "case-2")
	for addr, want := range map[string]string{"127.0.0.71": "amira.khan", "127.0.0.72": "jo.bloggs"} {
		if e := s.identity.Lookup(netip.MustParseAddr(addr), time.Now().UnixNano()); e == nil || e.User != want {
			t.Errorf("%s is named %+v, want user %q", addr, e, want)
		}
		if rc := askFrom(t, dnsAddr, addr, "bet.example"); rc != mdns.RcodeNameError {
			t.Errorf("DNS from %s: rcode %d, want NXDOMAIN (clients.users puts the pupil in students)", addr, rc)
		}
		if code := proxyGetFrom(t, s.proxyAddr, addr, "http://www.bet.example/"); code != http.StatusForbidden {
			t.Errorf("proxy from %s: %d, want 403", addr, code)
		}
	}
}

// TestDirectoryLoginSpellings: the directory takes "amira.khan " (a
// trailing space), " amira.khan" and "ａｍｉｒａ.khan" (full-width
// letters) for amira.khan (LDAP compares names after RFC 4518's
// preparation: width folded, insignificant spaces dropped), so each is her
// password's login. Each must name the one user amira.khan: her
// clients.users group decides and her events are hers. Before, the proxy
// recorded the name as typed (in lower case): a pupil adding a space
// escaped her clients.users entry (to the staff network's group) and
// started a fresh person in the reports.
func TestDirectoryLoginSpellings(t *testing.T) {
	srv := ldaptest.Start(t)
	upstream := testUpstream(t)
	settings := `    url: "` + srv.LDAPSURL + `"
    ca_file: "` + srv.CAFile + `"
    base_dn: "ou=people,` + ldaptest.Base + `"
    user_filter: "(uid=%s)"
    service_dn: "` + ldaptest.ServiceDN + `"
    service_password: {file: "{{dir}}/ldap-password"}
    cache_ttl: 10m
`
	cfg := strings.Replace(ldapReloadConfig(upstream, settings), "  default_group: staff\n", `  default_group: staff
  users:
    - {name: amira.khan, group: students}
`, 1)
	files := map[string]string{"adult.txt": "porn.example\n", "bet.txt": "bet.example\n", "ldap-password": ldaptest.ServicePass + "\n"}
	path, _ := writeConfig(t, cfg, files)
	s := startServingLog(t, path, io.Discard)
	for i, name := range []string{"amira.khan ", " amira.khan", "ａｍｉｒａ.khan", "Amira.Khan\u00a0"} {
		from := "127.0.0." + strconv.Itoa(81+i)
		if code := proxyLogin(t, s.proxyAddr, from, name, "Amira-pw-1", "http://www.bet.example/"); code != http.StatusForbidden {
			t.Errorf("login as %q: %d, want 403 (clients.users puts amira.khan in students)", name, code)
		}
		if e := s.identity.Lookup(netip.MustParseAddr(from), time.Now().UnixNano()); e == nil || e.User != "amira.khan" {
			t.Errorf("login as %q names %+v, want amira.khan", name, e)
		}
	}
}

// TestRADIUSRealmForms: Microsoft NPS and other RADIUS servers report the
// user as "SCHOOL\amira.khan" or "amira.khan@school.local" while
// clients.users and the people file say "amira.khan". With the school's
// own realms in identity.strip_realm those names are amira.khan: her
// clients.users group decides and her events are one person's. A name in
// a realm not listed (an eduroam visitor from another school) is kept
// whole, never taken for the local pupil of the same name; a machine's
// 802.1X session ("host/LIB-PC-01.school.local") names the device, not a
// person. Before, each realm form was another user: the pupil escaped
// her clients.users group to the staff network's.
func TestRADIUSRealmForms(t *testing.T) {
	upstream := testUpstream(t)
	cfg := strings.Replace(identityConfig(upstream, "", `
  strip_realm: [SCHOOL, school.local]
  radius:
    listen: "127.0.0.1:0"
    secret: {file: "{{dir}}/radius-secret"}
    nas: [127.0.0.1/32]
`), "  default_group: staff\n", `  default_group: staff
  users:
    - {name: amira.khan, group: students}
`, 1)
	path, _ := writeConfig(t, cfg, withIdentityLists(map[string]string{"radius-secret": e2eRADIUSSecret + "\n"}))
	s, _, _ := startServing(t, path)
	dnsAddr := s.dns.Addrs()[0].String()
	radiusStart(t, s.radius.Addr(), `SCHOOL\Amira.Khan`, "127.0.0.73", "realm-1")
	radiusStart(t, s.radius.Addr(), "amira.khan@School.Local", "127.0.0.74", "realm-2")
	radiusStart(t, s.radius.Addr(), "amira.khan@other.ac.uk", "127.0.0.75", "realm-3")
	radiusStart(t, s.radius.Addr(), "host/LIB-PC-01.school.local", "127.0.0.76", "realm-4")
	for _, c := range []struct {
		addr, user, device string
		rc                 int
	}{
		{"127.0.0.73", "amira.khan", "", mdns.RcodeNameError},
		{"127.0.0.74", "amira.khan", "", mdns.RcodeNameError},
		{"127.0.0.75", "amira.khan@other.ac.uk", "", mdns.RcodeSuccess},
		{"127.0.0.76", "", "LIB-PC-01", mdns.RcodeSuccess},
	} {
		e := s.identity.Lookup(netip.MustParseAddr(c.addr), time.Now().UnixNano())
		if e == nil || e.User != c.user || e.Device != c.device {
			t.Errorf("%s is named %+v, want user %q device %q", c.addr, e, c.user, c.device)
		}
		if rc := askFrom(t, dnsAddr, c.addr, "bet.example"); rc != c.rc {
			t.Errorf("DNS from %s: rcode %d, want %d", c.addr, rc, c.rc)
		}
	}
}

// TestDirectoryLoginRealm: at the proxy's login prompt a Windows user
// types "SCHOOL\amira.khan" or "amira.khan@school.local"; with those
// realms in identity.strip_realm the directory is asked for amira.khan
// and the login is recorded as amira.khan (her clients.users group
// decides). A realm not listed is not the school's: that login is refused.
// Before, both forms were refused ("\" is never sent to the directory, and
// no entry is called "amira.khan@school.local").
func TestDirectoryLoginRealm(t *testing.T) {
	srv := ldaptest.Start(t)
	upstream := testUpstream(t)
	settings := `    url: "` + srv.LDAPSURL + `"
    ca_file: "` + srv.CAFile + `"
    base_dn: "ou=people,` + ldaptest.Base + `"
    user_filter: "(uid=%s)"
    service_dn: "` + ldaptest.ServiceDN + `"
    service_password: {file: "{{dir}}/ldap-password"}
`
	cfg := strings.Replace(ldapReloadConfig(upstream, settings), "  default_group: staff\n", `  default_group: staff
  users:
    - {name: amira.khan, group: students}
`, 1)
	cfg = strings.Replace(cfg, "identity:\n", "identity:\n  strip_realm: [SCHOOL, school.local]\n", 1)
	files := map[string]string{"adult.txt": "porn.example\n", "bet.txt": "bet.example\n", "ldap-password": ldaptest.ServicePass + "\n"}
	path, _ := writeConfig(t, cfg, files)
	s := startServingLog(t, path, io.Discard)
	for i, name := range []string{`SCHOOL\amira.khan`, "Amira.Khan@School.Local"} {
		from := "127.0.0." + strconv.Itoa(91+i)
		if code := proxyLogin(t, s.proxyAddr, from, name, "Amira-pw-1", "http://www.bet.example/"); code != http.StatusForbidden {
			t.Errorf("login as %q: %d, want 403 (clients.users puts amira.khan in students)", name, code)
		}
		if e := s.identity.Lookup(netip.MustParseAddr(from), time.Now().UnixNano()); e == nil || e.User != "amira.khan" {
			t.Errorf("login as %q names %+v, want amira.khan", name, e)
		}
	}
	if code := proxyLogin(t, s.proxyAddr, "127.0.0.93", `OTHER\amira.khan`, "Amira-pw-1", "http://www.bet.example/"); code != http.StatusProxyAuthRequired {
		t.Errorf("a login in another realm: %d, want 407", code)
	}
}
