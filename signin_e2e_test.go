package main

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/gatehouse-filter/gatehouse/internal/oidctest"
)

// freePort is a loopback port free at the moment (the sign-in page's
// redirect URL must name its port before serve starts).
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// signinBrowser is a real HTTP client with a cookie jar whose connections
// come from the loopback address from, trusting the test provider.
func signinBrowser(p *oidctest.Provider, from string) *http.Client {
	jar, _ := cookiejar.New(nil)
	tr := p.Client().Transport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}).DialContext
	tr.DisableKeepAlives = true
	return &http.Client{Jar: jar, Transport: tr, Timeout: 30 * time.Second}
}

func signinFetch(t *testing.T, c *http.Client, method, u string, form url.Values) (int, string) {
	t.Helper()
	var resp *http.Response
	var err error
	if method == "POST" {
		resp, err = c.PostForm(u, form)
	} else {
		req, _ := http.NewRequest("GET", u, nil)
		req.Header.Set("Accept", browserAccept) // as a browser's page load: block pages come as pages
		resp, err = c.Do(req)
	}
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestSigninEndToEnd: a pupil's own device at 127.0.0.51 signs in on the
// sign-in page with the school's (test) OpenID provider → a DNS query and
// a proxy request from that address are decided by her group and the
// alert and stored events name her (display name, year, class from the
// people file; id_source signin) → the sign-in survives a restart → the
// block page of an address nobody is known at links to the page → sign-out
// ends it. A proxied request to the page is refused (it would name the
// proxy's own address).
func TestSigninEndToEnd(t *testing.T) {
	upstream := testUpstream(t)
	ib := newInbox(t)
	p := oidctest.New(t, "gatehouse-signin", "signin-client-secret")
	port := strconv.Itoa(freePort(t))
	page := "http://127.0.0.1:" + port
	path, _ := writeConfig(t, identityConfig(upstream, `proxy:
  listen: "127.0.0.1:0"
  http: {ip_networks: [127.0.0.0/8], ports: [80, `+port+`]}`, `
  groups:
    - {match: "*@pupils.example", group: students}
  people: "{{dir}}/people.csv"
  signin:
    listen: "127.0.0.1:`+port+`"
    allow: [127.0.0.0/26]
    issuer: "`+p.URL+`"
    ca_file: "{{dir}}/provider.pem"
    client_id: gatehouse-signin
    client_secret: {file: "{{dir}}/signin-secret"}
    redirect_url: "`+page+`/callback"
    domains: [pupils.example]
    ttl: 1h
`)+ib.smtpConfig(), withIdentityLists(map[string]string{
		"people.csv":    "user,display name,year,class\namira@pupils.example,Amira Khan,Year 8,8B\n",
		"signin-secret": "signin-client-secret\n",
		"provider.pem":  string(p.CertPEM()),
	}))
	s, _, stop := startServing(t, path)
	dnsAddr := s.dns.Addrs()[0].String()

	// Before: 127.0.0.51 is on the staff network, gambling allowed.
	if rc := askFrom(t, dnsAddr, "127.0.0.51", "bet.example"); rc != mdns.RcodeSuccess {
		t.Fatalf("before the sign-in: rcode %d", rc)
	}
	p.Set(oidctest.Claims{Email: "Amira@Pupils.Example", Name: "A Khan"})
	amira := signinBrowser(p, "127.0.0.51")
	if code, body := signinFetch(t, amira, "GET", page+"/", nil); code != 200 || !strings.Contains(body, "Sign in with your school account") {
		t.Fatalf("the page: %d\n%s", code, body)
	}
	// A forged X-Forwarded-For is not the address the page names.
	req, _ := http.NewRequest("POST", page+"/start", strings.NewReader(""))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Forwarded-For", "127.0.0.52")
	resp, err := amira.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "Amira Khan (amira@pupils.example)") {
		t.Fatalf("sign-in: %d\n%s", resp.StatusCode, body)
	}
	if rc := askFrom(t, dnsAddr, "127.0.0.52", "bet.example"); rc != mdns.RcodeSuccess {
		t.Fatal("the forged X-Forwarded-For address was named")
	}
	// Her group (students, from identity.groups) decides now, for DNS...
	if rc := askFrom(t, dnsAddr, "127.0.0.51", "bet.example"); rc != mdns.RcodeNameError {
		t.Fatalf("after the sign-in the pupil's group should decide: rcode %d", rc)
	}
	if rc := askFrom(t, dnsAddr, "127.0.0.51", "www.harm.example"); rc != mdns.RcodeNameError {
		t.Fatalf("harm: rcode %d", rc)
	}
	alert := decodeMail(ib.waitFor(t, 0, "self-harm", 30*time.Second))
	if !strings.Contains(alert, "Amira Khan (Year 8, 8B)") || !strings.Contains(alert, "sign-in page") {
		t.Fatalf("the alert does not name the pupil:\n%s", alert)
	}
	// ... and the proxy.
	proxyURL, _ := url.Parse("http://" + s.proxyAddr.String())
	viaProxy := func(from, target string) (int, string) {
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL),
			DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext}}
		return signinFetch(t, hc, "GET", target, nil)
	}
	if code, _ := viaProxy("127.0.0.51", "http://www.bet.example/"); code != http.StatusForbidden {
		t.Fatalf("proxy: %d", code)
	}
	// Through the proxy the page would see the proxy's own address: the
	// proxy never connects to it.
	if code, body := viaProxy("127.0.0.51", page+"/"); code != http.StatusForbidden || strings.Contains(body, "Sign in with") {
		t.Fatalf("the sign-in page through the proxy: %d\n%s", code, body)
	}
	// The block page of an address nobody is known at links to the page;
	// a named pupil's does not.
	if code, body := viaProxy("127.0.0.53", "http://porn.example/"); code != http.StatusForbidden || !strings.Contains(body, `href="`+page+`/"`) {
		t.Fatalf("block page for an unknown address: %d\n%s", code, body)
	}
	if _, body := viaProxy("127.0.0.51", "http://porn.example/"); strings.Contains(body, page) {
		t.Fatalf("the named pupil's block page offers the sign-in:\n%s", body)
	}

	// A restart: the sign-in is kept.
	stop()
	waitPortFree(t, "127.0.0.1:"+port)
	s, _, stop = startServing(t, path)
	dnsAddr = s.dns.Addrs()[0].String()
	if rc := askFrom(t, dnsAddr, "127.0.0.51", "bet.example"); rc != mdns.RcodeNameError {
		t.Fatalf("after a restart the sign-in should still decide: rcode %d", rc)
	}
	// Sign-out ends it: the network's group again.
	_, home := signinFetch(t, amira, "GET", page+"/", nil)
	m := regexp.MustCompile(`name="token" value="([0-9a-f]+)"`).FindStringSubmatch(home)
	if m == nil {
		t.Fatalf("no sign-out form after the restart:\n%s", home)
	}
	if code, body := signinFetch(t, amira, "POST", page+"/signout", url.Values{"token": {m[1]}}); code != 200 || !strings.Contains(body, "signed out") {
		t.Fatalf("sign-out: %d\n%s", code, body)
	}
	if rc := askFrom(t, dnsAddr, "127.0.0.51", "bet.example"); rc != mdns.RcodeSuccess {
		t.Fatalf("after sign-out: rcode %d", rc)
	}
	// A client outside the page's allow list is refused.
	if code, _ := signinFetch(t, signinBrowser(p, "127.0.0.100"), "GET", page+"/", nil); code != http.StatusForbidden {
		t.Fatalf("outside the allow list: %d", code)
	}
	stop()

	code, out, errs := runCLI(t, "events", "--config", path, "--since", "1h", "--json")
	if code != 0 {
		t.Fatalf("events: %d %s", code, errs)
	}
	var dnsNamed, proxyNamed bool
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		if ev["user"] == "amira@pupils.example" && ev["display"] == "Amira Khan" && ev["id_source"] == "signin" &&
			ev["year"] == "Year 8" && ev["class"] == "8B" && ev["group"] == "students" && ev["client"] == "127.0.0.51" {
			if ev["source"] == "dns" {
				dnsNamed = true
			} else {
				proxyNamed = true
			}
		}
	}
	if !dnsNamed || !proxyNamed {
		t.Fatalf("stored events: dns %t, proxy %t:\n%s", dnsNamed, proxyNamed, out)
	}
}

// waitPortFree waits (a bounded number of tries) until addr can be bound
// again after a stop.
func waitPortFree(t *testing.T, addr string) {
	t.Helper()
	for range 200 {
		if ln, err := net.Listen("tcp", addr); err == nil {
			ln.Close()
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("%s still in use", addr)
}

// TestSigninHTTPS: with cert and key the page is HTTPS only, with its
// certificate (HSTS on); the client secret never reaches the log.
func TestSigninHTTPS(t *testing.T) {
	upstream := testUpstream(t)
	p := oidctest.New(t, "gatehouse-signin", "signin-client-secret-xyz")
	port := strconv.Itoa(freePort(t))
	dir := t.TempDir()
	pool := wildcardPEM(t, dir, "signin.school.example")
	path, _ := writeConfig(t, `
school: {name: Test School}
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy: {listen: "127.0.0.1:0"}
dns:
  listen: ["127.0.0.1:0"]
  upstreams: ["`+upstream+`"]
identity:
  signin:
    listen: "127.0.0.1:`+port+`"
    cert: "`+dir+`/cert.pem"
    key: "`+dir+`/key.pem"
    issuer: "`+p.URL+`"
    ca_file: "{{dir}}/provider.pem"
    client_id: gatehouse-signin
    client_secret: {file: "{{dir}}/signin-secret"}
    redirect_url: "https://signin.school.example:`+port+`/callback"
    domains: [pupils.example]
`, map[string]string{"signin-secret": "signin-client-secret-xyz\n", "provider.pem": string(p.CertPEM())})
	logs := new(lockedBuffer)
	startServingLog(t, path, logs)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "signin.school.example"}}}
	resp, err := c.Get("https://127.0.0.1:" + port + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "Sign in with your school account") || resp.Header.Get("Strict-Transport-Security") == "" {
		t.Fatalf("HTTPS page: %d %v\n%s", resp.StatusCode, resp.Header, body)
	}
	plain := &http.Client{Timeout: 10 * time.Second}
	if resp, err := plain.Get("http://127.0.0.1:" + port + "/"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), "Sign in") {
			t.Fatal("the page answered plain HTTP")
		}
	}
	if strings.Contains(logs.String(), "signin-client-secret-xyz") {
		t.Fatal("the client secret is in the log")
	}
	if !strings.Contains(logs.String(), "sign-in page listening") {
		t.Fatalf("no start line:\n%s", logs.String())
	}
}

// TestSigninSchoolDevice: a school device listed in clients.devices (by
// its MAC, at the address its DHCP lease gives it, or by its address)
// keeps the group and name the config gives it. Its block page does not
// offer the sign-in page, and the page refuses to sign anyone in there:
// a pupil at a classroom computer cannot sign in with a teacher's account
// (whose clients.users group is staff) and take the staff filtering, nor
// relabel the computer's events. Before, the block page of a device
// listed by MAC offered the link (the lease named it with the static
// name), and a sign-in from either device gave it the teacher's group.
func TestSigninSchoolDevice(t *testing.T) {
	upstream := testUpstream(t)
	p := oidctest.New(t, "gatehouse-signin", "signin-client-secret")
	port := strconv.Itoa(freePort(t))
	page := "http://127.0.0.1:" + port
	cfg := strings.Replace(identityConfig(upstream, `proxy:
  listen: "127.0.0.1:0"
  http: {ip_networks: [127.0.0.0/8], ports: [80, `+port+`]}`, `
  dhcp_leases:
    - {path: "{{dir}}/dnsmasq.leases", format: dnsmasq}
  signin:
    listen: "127.0.0.1:`+port+`"
    allow: [127.0.0.0/26]
    issuer: "`+p.URL+`"
    ca_file: "{{dir}}/provider.pem"
    client_id: gatehouse-signin
    client_secret: {file: "{{dir}}/signin-secret"}
    redirect_url: "`+page+`/callback"
    domains: [school.example]
    ttl: 1h
`), "  default_group: staff\n", `  default_group: staff
  devices:
    - {name: CLASS-PC-1, mac: "3c:22:fb:12:34:60", group: students}
    - {name: CLASS-PC-2, ip: 127.0.0.61, group: students}
  users:
    - {name: teacher@school.example, group: staff}
`, 1)
	path, _ := writeConfig(t, cfg, withIdentityLists(map[string]string{
		"dnsmasq.leases": "0 3c:22:fb:12:34:60 127.0.0.60 class-pc-1 *\n0 3c:22:fb:12:34:62 127.0.0.62 phone *\n",
		"signin-secret":  "signin-client-secret\n",
		"provider.pem":   string(p.CertPEM()),
	}))
	s, _, _ := startServing(t, path)
	dnsAddr := s.dns.Addrs()[0].String()
	deadline := time.Now().Add(10 * time.Second)
	for s.identity.Lookup(netip.MustParseAddr("127.0.0.60"), time.Now().UnixNano()) == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	proxyURL, _ := url.Parse("http://" + s.proxyAddr.String())
	viaProxy := func(from, target string) (int, string) {
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL),
			DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext}}
		return signinFetch(t, hc, "GET", target, nil)
	}
	p.Set(oidctest.Claims{Email: "teacher@school.example", Name: "A Teacher"})
	for _, c := range []struct{ addr, name string }{{"127.0.0.60", "CLASS-PC-1"}, {"127.0.0.61", "CLASS-PC-2"}} {
		if code, body := viaProxy(c.addr, "http://porn.example/"); code != http.StatusForbidden || strings.Contains(body, page) || !strings.Contains(body, c.name) {
			t.Errorf("%s: the school device's block page offers the sign-in page or does not name it: %d\n%s", c.name, code, body)
		}
		b := signinBrowser(p, c.addr)
		if code, body := signinFetch(t, b, "GET", page+"/", nil); code != 200 || strings.Contains(body, `action="/start"`) || !strings.Contains(body, c.name) {
			t.Errorf("%s: the page offers a sign-in on a school device: %d\n%s", c.name, code, body)
		}
		if code, body := signinFetch(t, b, "POST", page+"/start", url.Values{}); code != http.StatusForbidden || strings.Contains(body, "signed in as") {
			t.Errorf("%s: a sign-in on a school device: %d\n%s", c.name, code, body)
		}
		// Its own group (students) still decides: gambling blocked.
		if rc := askFrom(t, dnsAddr, c.addr, "bet.example"); rc != mdns.RcodeNameError {
			t.Errorf("%s: after the sign-in attempt the teacher's group decides: rcode %d", c.name, rc)
		}
		if e := s.identity.Lookup(netip.MustParseAddr(c.addr), time.Now().UnixNano()); e != nil && e.User != "" {
			t.Errorf("%s: named as %q", c.name, e.User)
		}
	}
	// A pupil's own phone, named only by its lease, is offered the page.
	if _, body := viaProxy("127.0.0.62", "http://porn.example/"); !strings.Contains(body, `href="`+page+`/"`) {
		t.Errorf("a leased phone's block page does not offer the sign-in page:\n%s", body)
	}
	if code, body := signinFetch(t, signinBrowser(p, "127.0.0.62"), "POST", page+"/start", url.Values{}); code != 200 || !strings.Contains(body, "teacher@school.example") {
		t.Errorf("a sign-in on a phone: %d\n%s", code, body)
	}
}
