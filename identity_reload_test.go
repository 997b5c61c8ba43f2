package main

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"layeh.com/radius"
	"layeh.com/radius/rfc2865"
	"layeh.com/radius/rfc2866"

	"github.com/gatehouse-filter/gatehouse/identity"
	"github.com/gatehouse-filter/gatehouse/identity/ldaptest"
)

// proxyLogin sends a request for target through the proxy at proxy from
// the loopback address from, logging in as user, and returns the status.
func proxyLogin(t *testing.T, proxy net.Addr, from, user, pass, target string) int {
	t.Helper()
	u := &url.URL{Scheme: "http", Host: proxy.String(), User: url.UserPassword(user, pass)}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(u),
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(target)
	if err != nil {
		t.Errorf("proxy request from %s: %v", from, err)
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// ldapReloadConfig is a config whose identity.ldap is ldap (YAML lines
// under "  ldap:", or "" for none).
func ldapReloadConfig(upstream, ldap string) string {
	c := `
school: {name: Test School}
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy: {listen: "127.0.0.1:0"}
dns:
  listen: ["127.0.0.1:0"]
  upstreams: ["` + upstream + `"]
  rate_limit: {qps: 0}
lists:
  - {name: adult, path: "{{dir}}/adult.txt", category: pornography}
  - {name: bet, path: "{{dir}}/bet.txt", category: gambling}
groups:
  students:
    block: [pornography, gambling]
  staff:
    networks: [127.0.0.0/8]
    block: [pornography]
clients:
  default_group: staff
`
	if ldap != "" {
		c += "identity:\n  ldap:\n" + ldap
	}
	return c
}

// ldapSettings is identity.ldap against srv: url (StartTLS for ldap://),
// the students' directory group mapped to studentsGroup, cache_ttl ttl.
func ldapSettings(srv *ldaptest.Server, url, studentsGroup, ttl string) string {
	s := `    url: "` + url + `"
    ca_file: "` + srv.CAFile + `"
    base_dn: "ou=people,` + ldaptest.Base + `"
    user_filter: "(uid=%s)"
    service_dn: "` + ldaptest.ServiceDN + `"
    service_password: {file: "{{dir}}/ldap-password"}
    groups:
      - {dn: "` + ldaptest.StaffDN + `", group: staff}
      - {dn: "` + ldaptest.StudentsDN + `", group: ` + studentsGroup + `}
    attributes: {display: displayName, year: employeeType, class: departmentNumber}
    cache_ttl: ` + ttl + "\n"
	if strings.HasPrefix(url, "ldap://") {
		s += "    start_tls: true\n"
	}
	return s
}

// TestReloadAppliesLDAP: every identity.ldap setting applies by a reload
// (the SIGHUP path), with a real slapd. The group mapping: the address a
// pupil logged in from takes the new group at once, for DNS too, and her
// remembered login is not asked of the directory again. The cache TTL and
// the server (StartTLS → LDAPS): the login is asked of the directory again,
// and succeeds there. A server that cannot be reached: her next login is
// 503, not answered from the old directory's cache. Off and on again: the
// proxy stops and starts checking logins.
func TestReloadAppliesLDAP(t *testing.T) {
	srv := ldaptest.Start(t)
	upstream := testUpstream(t)
	files := map[string]string{"adult.txt": "porn.example\n", "bet.txt": "bet.example\n", "ldap-password": ldaptest.ServicePass + "\n"}
	path, dir := writeConfig(t, ldapReloadConfig(upstream, ldapSettings(srv, srv.LDAPURL, "students", "10m")), files)
	logs := new(lockedBuffer)
	s := startServingLog(t, path, logs)
	dnsAddr := s.dns.Addrs()[0].String()
	const from = "127.0.0.21"
	login := func(pass string) int {
		t.Helper()
		return proxyLogin(t, s.proxyAddr, from, "amira.khan", pass, "http://www.porn.example/")
	}
	reload := func(ldap string) {
		t.Helper()
		reloadFile(t, s, path, dir, ldapReloadConfig(upstream, ldap))
	}

	if code := login("Amira-pw-1"); code != http.StatusForbidden {
		t.Fatalf("login: %d", code)
	}
	if rc := askFrom(t, dnsAddr, from, "bet.example"); rc != mdns.RcodeNameError {
		t.Fatalf("after the login her group (students) should decide: rcode %d", rc)
	}
	binds := srv.Binds(t)

	// The students' directory group now maps to staff.
	reload(ldapSettings(srv, srv.LDAPURL, "staff", "10m"))
	if rc := askFrom(t, dnsAddr, from, "bet.example"); rc != mdns.RcodeSuccess {
		t.Fatalf("after the reload her directory group maps to staff: rcode %d", rc)
	}
	// (Binds counts the bind it makes itself.)
	if code, now := login("Amira-pw-1"), srv.Binds(t); code != http.StatusForbidden || now != binds+1 {
		t.Fatalf("login after a group mapping change: %d, %d binds (want the remembered login)", code, now-binds-1)
	}
	binds += 1
	if !strings.Contains(logs.String(), `change="identity.ldap.groups[1].group: changed" status=applied`) &&
		!strings.Contains(logs.String(), `identity.ldap.groups: changed" status=applied`) {
		t.Fatalf("the reload log does not say the group mapping applied:\n%s", logs.String())
	}

	// Another server (LDAPS), students again, a shorter TTL.
	reload(ldapSettings(srv, srv.LDAPSURL, "students", "1m"))
	if rc := askFrom(t, dnsAddr, from, "bet.example"); rc != mdns.RcodeNameError {
		t.Fatalf("mapped back to students: rcode %d", rc)
	}
	if code, now := login("Amira-pw-1"), srv.Binds(t); code != http.StatusForbidden || now < binds+3 {
		t.Fatalf("login after a server change: %d, %d binds (want the directory asked again: the service account and hers)", code, now-binds-1)
	}
	if code := login("wrong"); code != http.StatusProxyAuthRequired {
		t.Fatalf("wrong password over LDAPS: %d", code)
	}

	// A server that cannot be reached: the login is not taken from the
	// old server's cache.
	reload(ldapSettings(srv, "ldap://127.0.0.1:1", "students", "1m"))
	if code := login("Amira-pw-1"); code != http.StatusServiceUnavailable {
		t.Fatalf("login with the directory unreachable: %d, want 503", code)
	}

	// Off: the proxy takes no logins (credentials are ignored); on again:
	// a wrong password is refused.
	reload("")
	if code := login("wrong"); code != http.StatusForbidden {
		t.Fatalf("directory logins off: %d, want the request decided without a login", code)
	}
	reload(ldapSettings(srv, srv.LDAPURL, "students", "10m"))
	if code := login("wrong"); code != http.StatusProxyAuthRequired {
		t.Fatalf("directory logins on again, wrong password: %d", code)
	}
	if code := login("Amira-pw-1"); code != http.StatusForbidden {
		t.Fatalf("directory logins on again: %d", code)
	}
	if strings.Contains(logs.String(), "Amira-pw-1") || strings.Contains(logs.String(), ldaptest.ServicePass) {
		t.Fatal("a password reached the log")
	}
}

// TestReloadLDAPNoGap: proxy logins made while identity.ldap is reloaded
// again and again (the server and the group mapping changing each time)
// are each decided, by the old settings or the new: never refused as a
// bad login or for want of a directory.
func TestReloadLDAPNoGap(t *testing.T) {
	srv := ldaptest.Start(t)
	upstream := testUpstream(t)
	files := map[string]string{"adult.txt": "porn.example\n", "bet.txt": "bet.example\n", "ldap-password": ldaptest.ServicePass + "\n"}
	configs := []string{
		ldapReloadConfig(upstream, ldapSettings(srv, srv.LDAPURL, "students", "10m")),
		ldapReloadConfig(upstream, ldapSettings(srv, srv.LDAPSURL, "staff", "0s")),
	}
	path, dir := writeConfig(t, configs[0], files)
	s := startServingLog(t, path, new(lockedBuffer))
	var stop atomic.Bool
	var wg sync.WaitGroup
	var n atomic.Int64
	for _, from := range []string{"127.0.0.31", "127.0.0.32"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				// www.porn.example is blocked for students and staff alike:
				// 403 is a decided login.
				if code := proxyLogin(t, s.proxyAddr, from, "amira.khan", "Amira-pw-1", "http://www.porn.example/"); code != http.StatusForbidden {
					t.Errorf("login from %s during reloads: %d", from, code)
					return
				}
				n.Add(1)
			}
		}()
	}
	for i := range 20 {
		reloadFile(t, s, path, dir, configs[(i+1)%2])
		time.Sleep(10 * time.Millisecond) // let logins in between
	}
	stop.Store(true)
	wg.Wait()
	if n.Load() < 10 {
		t.Fatalf("only %d logins during the reloads", n.Load())
	}
}

// TestReloadAppliesPeopleAndLeases: a reload naming another people file
// or other DHCP lease files applies at once: the pupil mapped by RADIUS is
// named from the new people file, the dropped lease file's device is no
// longer named and the new one's is, and a static device's MAC added by
// the reload names its lease.
func TestReloadAppliesPeopleAndLeases(t *testing.T) {
	upstream := testUpstream(t)
	conf := func(people, leases, devices string) string {
		return `
school: {name: Test School}
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy: {listen: "127.0.0.1:0"}
dns:
  listen: ["127.0.0.1:0"]
  upstreams: ["` + upstream + `"]
groups:
  staff:
    networks: [127.0.0.0/8]
    block: []
clients:
  default_group: staff
` + devices + `
identity:
  people: "{{dir}}/` + people + `"
  radius:
    listen: "127.0.0.1:0"
    secret: {file: "{{dir}}/radius-secret"}
    nas: [127.0.0.1/32]
  dhcp_leases:
` + leases
	}
	path, dir := writeConfig(t, conf("people-a.csv", "    - {path: \"{{dir}}/dnsmasq.leases\", format: dnsmasq}\n", ""), map[string]string{
		"people-a.csv":   "user,display name,year,class\namira@pupils.example,Amira Khan,Year 8,8B\n",
		"people-b.csv":   "user,display name,year,class\namira@pupils.example,Amira Khan-Ali,Year 9,9C\n",
		"radius-secret":  e2eRADIUSSecret + "\n",
		"dnsmasq.leases": "0 3c:22:fb:12:34:56 127.0.0.10 LIB-LAPTOP-12 *\n",
		"kea.csv": "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state\n" +
			"127.0.0.40,00:11:22:33:44:55,,3600,4102444800,1,0,0,art-pc-3,0\n",
	})
	logs := new(lockedBuffer)
	s := startServingLog(t, path, logs)
	accounting(t, s.radius.Addr(), "Start") // amira@pupils.example at 127.0.0.9
	who := func(addr string) (display, year, device string) {
		e := s.identity.Lookup(netip.MustParseAddr(addr), time.Now().UnixNano())
		if e == nil {
			return "", "", ""
		}
		return e.Display, e.Year, e.Device
	}
	if d, y, _ := who("127.0.0.9"); d != "Amira Khan" || y != "Year 8" {
		t.Fatalf("before the reload: %q %q", d, y)
	}
	if _, _, dev := who("127.0.0.10"); dev != "LIB-LAPTOP-12" {
		t.Fatalf("before the reload 127.0.0.10 is %q", dev)
	}
	reloadFile(t, s, path, dir, conf("people-b.csv", "    - {path: \"{{dir}}/kea.csv\", format: kea}\n", ""))
	if d, y, _ := who("127.0.0.9"); d != "Amira Khan-Ali" || y != "Year 9" {
		t.Fatalf("after the reload to people-b.csv: %q %q", d, y)
	}
	if _, _, dev := who("127.0.0.10"); dev != "" {
		t.Fatalf("the dropped lease file still names 127.0.0.10 %q", dev)
	}
	if _, _, dev := who("127.0.0.40"); dev != "art-pc-3" {
		t.Fatalf("the new lease file does not name 127.0.0.40: %q", dev)
	}
	reloadFile(t, s, path, dir, conf("people-b.csv", "    - {path: \"{{dir}}/kea.csv\", format: kea}\n",
		"  devices:\n    - {name: ART-PC-3-STATIC, mac: \"00:11:22:33:44:55\"}\n"))
	if _, _, dev := who("127.0.0.40"); dev != "ART-PC-3-STATIC" {
		t.Fatalf("a static device's MAC added by a reload does not name its lease: %q", dev)
	}
	if l := logs.String(); !strings.Contains(l, `change="identity.people: changed" status=applied`) ||
		!strings.Contains(l, `change="identity.dhcp_leases: changed" status=applied`) {
		t.Fatalf("the reload log does not say the changes applied:\n%s", l)
	}
	// A people file that cannot be read rejects the reload: the running
	// one stays.
	reloadFile(t, s, path, dir, conf("nonexistent.csv", "    - {path: \"{{dir}}/kea.csv\", format: kea}\n", ""))
	if d, _, _ := who("127.0.0.9"); d != "Amira Khan-Ali" {
		t.Fatalf("after a rejected reload: %q", d)
	}
}

// TestReloadAppliesRADIUS: a reload's new shared secret (a rotated secret
// file), NAS list and timeout apply to the running RADIUS listener: the
// old secret's packets are then counted as forged and map nothing, the new
// one's are answered; a NAS no longer listed is not read at all.
func TestReloadAppliesRADIUS(t *testing.T) {
	upstream := testUpstream(t)
	conf := func(nas, timeout string) string {
		return `
school: {name: Test School}
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy: {listen: "127.0.0.1:0"}
dns:
  listen: ["127.0.0.1:0"]
  upstreams: ["` + upstream + `"]
groups:
  staff:
    networks: [127.0.0.0/8]
    block: []
clients:
  default_group: staff
identity:
  radius:
    listen: "127.0.0.1:0"
    secret: {file: "{{dir}}/radius-secret"}
    nas: [` + nas + `]
    timeout: ` + timeout + `
`
	}
	path, dir := writeConfig(t, conf("127.0.0.1/32", "2h"), map[string]string{"radius-secret": "old-secret\n"})
	logs := new(lockedBuffer)
	s := startServingLog(t, path, logs)
	// start sends a Start and reports whether it was answered (waiting
	// long for a packet that should be, briefly for one that should not).
	start := func(secret, user, ip string, answered bool) bool {
		t.Helper()
		p := radius.New(radius.CodeAccountingRequest, []byte(secret))
		rfc2866.AcctStatusType_Set(p, rfc2866.AcctStatusType_Value_Start)
		rfc2865.UserName_SetString(p, user)
		rfc2865.FramedIPAddress_Set(p, net.ParseIP(ip).To4())
		rfc2866.AcctSessionID_SetString(p, user)
		wait := time.Second
		if answered {
			wait = 10 * time.Second
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_, err := radius.Exchange(ctx, p, s.radius.Addr().String())
		return err == nil
	}
	user := func(ip string) (string, time.Time) {
		e := s.identity.Lookup(netip.MustParseAddr(ip), time.Now().UnixNano())
		if e == nil {
			return "", time.Time{}
		}
		return e.User, time.Unix(0, e.Until)
	}
	if !start("old-secret", "amira", "127.0.0.51", true) {
		t.Fatal("Start with the running secret was not answered")
	}
	if u, until := user("127.0.0.51"); u != "amira" || time.Until(until) < time.Hour {
		t.Fatalf("before the reload: %q until %v", u, until)
	}
	// The secret file is rotated and the timeout shortened.
	if err := os.WriteFile(filepath.Join(dir, "radius-secret"), []byte("new-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reloadFile(t, s, path, dir, conf("127.0.0.1/32", "30m"))
	forged := s.radius.Count(identity.ResultForged)
	if start("old-secret", "bob", "127.0.0.52", false) {
		t.Fatal("a Start with the old secret was answered after the reload")
	}
	for i := 0; i < 50 && s.radius.Count(identity.ResultForged) == forged; i++ {
		time.Sleep(100 * time.Millisecond) // the processing goroutine counts it
	}
	if u, _ := user("127.0.0.52"); u != "" || s.radius.Count(identity.ResultForged) == forged {
		t.Fatalf("old secret: mapped %q, forged count %d → %d", u, forged, s.radius.Count(identity.ResultForged))
	}
	if !start("new-secret", "carol", "127.0.0.53", true) {
		t.Fatal("a Start with the new secret was not answered")
	}
	if u, until := user("127.0.0.53"); u != "carol" || time.Until(until) > 30*time.Minute {
		t.Fatalf("after the reload: %q until %v (want the 30m timeout)", u, until)
	}
	// 127.0.0.1 is no longer a NAS.
	reloadFile(t, s, path, dir, conf("10.0.0.1/32", "30m"))
	refused := s.radius.Count(identity.ResultNotAllowed)
	if start("new-secret", "dave", "127.0.0.54", false) {
		t.Fatal("a Start from an address no longer listed in nas was answered")
	}
	if s.radius.Count(identity.ResultNotAllowed) == refused {
		t.Fatal("the packet from a NAS no longer listed was not counted")
	}
	// The socket stays: a new address needs a restart, and the log says so.
	reloadFile(t, s, path, dir, strings.Replace(conf("10.0.0.1/32", "30m"), `    listen: "127.0.0.1:0"
    secret`, `    listen: "127.0.0.2:0"
    secret`, 1))
	if !strings.Contains(logs.String(), `change="identity.radius.listen: changed" status="needs a restart"`) ||
		!strings.Contains(logs.String(), `change="identity.radius.nas: changed" status=applied`) {
		t.Fatalf("the reload log:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "new-secret") || strings.Contains(logs.String(), "old-secret") {
		t.Fatal("a RADIUS secret reached the log")
	}
}

// TestReloadNeverDropsProxyLogins: a group that must log in to the proxy
// is never let through unnamed. A reload that turns identity.ldap off and
// adds proxy.auth.users_file (read only at start) leaves the running
// proxy with no login source until a restart: its clients get 503 "tell
// IT", not browsing without a login.
func TestReloadNeverDropsProxyLogins(t *testing.T) {
	srv := ldaptest.Start(t)
	upstream := testUpstream(t)
	conf := func(ldap, auth string) string {
		c := `
school: {name: Test School}
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy: {listen: "127.0.0.1:0"` + auth + `}
dns:
  listen: ["127.0.0.1:0"]
  upstreams: ["` + upstream + `"]
  rate_limit: {qps: 0}
lists:
  - {name: bet, path: "{{dir}}/bet.txt", category: gambling}
groups:
  students:
    networks: [127.0.0.0/8]
    proxy_login: true
    block: [gambling]
`
		if ldap != "" {
			c += "identity:\n  ldap:\n" + ldap
		}
		return c
	}
	files := map[string]string{"bet.txt": "bet.example\n", "ldap-password": ldaptest.ServicePass + "\n",
		"users": "nobody:$2y$10$abcdefghijklmnopqrstuu5Zr8DyJYwlGvGvTgzUq2nYdTbS0Q9Ce\n"}
	path, dir := writeConfig(t, conf(ldapSettings(srv, srv.LDAPURL, "students", "10m"), ""), files)
	s, _, _ := startServing(t, path)
	const from = "127.0.0.41"
	get := func() int { // no credentials
		t.Helper()
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			Proxy:       http.ProxyURL(&url.URL{Scheme: "http", Host: s.proxyAddr.String()}),
			DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext}}
		defer hc.CloseIdleConnections()
		resp, err := hc.Get("http://www.bet.example/")
		if err != nil {
			t.Fatalf("proxy request: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(); code != http.StatusProxyAuthRequired {
		t.Fatalf("with the directory: %d, want 407", code)
	}
	reloadFile(t, s, path, dir, conf("", `, auth: {users_file: "{{dir}}/users"}`))
	if code := get(); code != http.StatusServiceUnavailable {
		t.Fatalf("no login source running after the reload: %d, want 503 (never let through unnamed)", code)
	}
}

// TestReloadGoesOnWhileSecretUnreadable: a secret file caught mid-rotation
// (here: gone for a moment) rejects a reload only if its own section
// changed. A reload of something else (a block rule, or an allow entry
// made in the console) goes on, and the running RADIUS secret stays.
func TestReloadGoesOnWhileSecretUnreadable(t *testing.T) {
	upstream := testUpstream(t)
	conf := func(block string) string {
		return `
school: {name: Test School}
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy: {listen: "127.0.0.1:0"}
dns:
  listen: ["127.0.0.1:0"]
  upstreams: ["` + upstream + `"]
  rate_limit: {qps: 0}
lists:
  - {name: bet, path: "{{dir}}/bet.txt", category: gambling}
groups:
  staff:
    networks: [127.0.0.0/8]
    block: [` + block + `]
clients:
  default_group: staff
identity:
  radius:
    listen: "127.0.0.1:0"
    secret: {file: "{{dir}}/radius-secret"}
    nas: [127.0.0.1/32]
`
	}
	path, dir := writeConfig(t, conf(""), map[string]string{"radius-secret": "the-secret\n", "bet.txt": "bet.example\n"})
	s, _, _ := startServing(t, path)
	dnsAddr := s.dns.Addrs()[0].String()
	if rc := askFrom(t, dnsAddr, "127.0.0.61", "bet.example"); rc == mdns.RcodeNameError {
		t.Fatal("blocked before the rule")
	}
	if err := os.Remove(filepath.Join(dir, "radius-secret")); err != nil {
		t.Fatal(err)
	}
	reloadFile(t, s, path, dir, conf("gambling"))
	if rc := askFrom(t, dnsAddr, "127.0.0.61", "bet.example"); rc != mdns.RcodeNameError {
		t.Fatalf("the new block rule was not applied (the reload was refused for the unreadable secret): rcode %d", rc)
	}
	p := radius.New(radius.CodeAccountingRequest, []byte("the-secret"))
	rfc2866.AcctStatusType_Set(p, rfc2866.AcctStatusType_Value_Start)
	rfc2865.UserName_SetString(p, "amira")
	rfc2865.FramedIPAddress_Set(p, net.ParseIP("127.0.0.62").To4())
	rfc2866.AcctSessionID_SetString(p, "s1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := radius.Exchange(ctx, p, s.radius.Addr().String()); err != nil {
		t.Fatalf("the running secret did not stay: %v", err)
	}
}
