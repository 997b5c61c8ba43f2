package main

import (
	"fmt"
	"html"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/console"
	"github.com/gatehouse-filter/gatehouse/policy"
)

const itServeConfig = `
school: {name: Test School}
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
console: {listen: "127.0.0.1:0"}
dns: {listen: ["127.0.0.1:0"], upstreams: ["UPSTREAM"]}
lists:
  - name: adult
    path: {{dir}}/adult.txt
    category: pornography
  - name: iwf
    path: {{dir}}/iwf.txt
    category: iwf
    format: sha256
groups:
  students:
    networks: [127.0.0.0/8]
    block: [pornography]
`

// TestConsoleManagedEntryIsLive: an allow entry made in the console
// changes the DNS answer of the running server at once (no restart), with
// every query during the change answered either as before or as after;
// `gatehouse check` agrees with the console's "why blocked"; an allow entry
// for a name on the hashed restricted list, from the console or written
// into the managed file by hand, never unblocks it.
func TestConsoleManagedEntryIsLive(t *testing.T) {
	upstream := testUpstream(t)
	path, dir := writeConfig(t, strings.Replace(itServeConfig, "UPSTREAM", upstream, 1),
		map[string]string{"adult.txt": "porn.example\n", "iwf.txt": sha("abuse.example") + "\n"})
	var out string
	var code int
	withStdin("copper kettle violin harbour\n", func() {
		code, out, _ = runCLI(t, "--config", path, "accounts", "add", "it@school.example", "--role", "it")
	})
	m := regexp.MustCompile(`secret=([A-Z2-7]+)`).FindStringSubmatch(out)
	if code != exitOK || m == nil {
		t.Fatalf("add: %d %q", code, out)
	}
	s, _, _ := startServing(t, path)
	base := "http://" + s.consoleAddr.String()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	resp, err := c.PostForm(base+"/signin", url.Values{"email": {"it@school.example"}, "password": {"copper kettle violin harbour"}})
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	csrfRE := regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	now, _ := console.TOTPCode(m[1], time.Now())
	if resp, err = c.PostForm(base+"/signin/code", url.Values{"code": {now}, "csrf": {csrfRE.FindStringSubmatch(body)[1]}}); err != nil {
		t.Fatal(err)
	}
	if body = readAll(t, resp); resp.Request.URL.Path != "/" {
		t.Fatalf("sign-in: %s\n%s", resp.Request.URL.Path, body)
	}
	tok := csrfRE.FindStringSubmatch(body)[1]

	dnsAddr := s.dns.Addrs()[0].String()
	ask := func(name string) (int, error) {
		q := new(mdns.Msg)
		q.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
		r, _, err := (&mdns.Client{Net: "udp", Timeout: 5 * time.Second}).Exchange(q, dnsAddr)
		if err != nil {
			return -1, err
		}
		return r.Rcode, nil
	}
	if rc, err := ask("www.porn.example"); err != nil || rc != mdns.RcodeNameError {
		t.Fatalf("before: %d %v", rc, err)
	}
	checkText := func(target string) string {
		t.Helper()
		code, out, errs := runCLI(t, "--config", path, "check", "--client", "127.0.0.1", target)
		if code != 0 {
			t.Fatalf("check: %d %s", code, errs)
		}
		return out
	}
	// The console's answer is check's, line for line.
	resp, err = c.PostForm(base+"/it/why", url.Values{"csrf": {tok}, "client": {"127.0.0.1"}, "target": {"www.porn.example"}})
	if err != nil {
		t.Fatal(err)
	}
	page := html.UnescapeString(readAll(t, resp))
	for _, line := range strings.Split(strings.TrimSpace(checkText("www.porn.example")), "\n") {
		label, text, _ := strings.Cut(line, "  ")
		if label == "at" {
			continue
		}
		if want := "<dt>" + label + "</dt><dd>" + strings.TrimSpace(text) + "</dd>"; !strings.Contains(page, want) {
			t.Errorf("why blocked lacks check's %q", want)
		}
	}

	// Queries keep being answered while the entry is added: blocked until
	// the new snapshot is live, allowed from then on, never an error.
	var stopAsking atomic.Bool
	var wg sync.WaitGroup
	var seen []int
	var askErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 5000 && !stopAsking.Load(); i++ {
			rc, err := ask("www.porn.example")
			if err != nil {
				askErr = err
				return
			}
			seen = append(seen, rc)
		}
	}()
	resp, err = c.PostForm(base+"/it/lists", url.Values{"csrf": {tok}, "group": {"students"}, "kind": {"allow"},
		"entry": {"porn.example"}, "reason": {"sex education lesson, year 10"}})
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); resp.StatusCode != 200 || !strings.Contains(body, "is now on group students") {
		t.Fatalf("add: %d\n%s", resp.StatusCode, body)
	}
	stopAsking.Store(true)
	wg.Wait()
	if askErr != nil {
		t.Fatalf("a query during the change failed: %v", askErr)
	}
	t.Logf("%d queries answered during the change", len(seen))
	after := false
	for i, rc := range seen {
		switch {
		case rc == mdns.RcodeSuccess:
			after = true
		case rc == mdns.RcodeNameError && !after:
		default:
			t.Fatalf("query %d during the change: rcode %d after %v", i, rc, seen[:i])
		}
	}
	if rc, err := ask("www.porn.example"); err != nil || rc != mdns.RcodeSuccess {
		t.Errorf("after the add, no restart: %d %v", rc, err)
	}
	if out := checkText("www.porn.example"); !strings.Contains(out, "ALLOW") || !strings.Contains(out, "on the allow list of group students") {
		t.Errorf("gatehouse check after the add:\n%s", out)
	}
	if fi, err := os.Stat(filepath.Join(dir, config.ManagedFileName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("managed file: %v %v", fi, err)
	}

	// The status page reads the running parts.
	resp, err = c.Get(base + "/it/status")
	if err != nil {
		t.Fatal(err)
	}
	status := readAll(t, resp)
	for _, want := range []string{`<th scope="row" data-label="List">adult</th><td data-label="Entries">1</td>`, `<th scope="row" data-label="List">iwf</th><td data-label="Entries">1</td>`, "default: all 1 answering",
		filepath.Join(dir, "gatehouse.db") + ": ", "Update lists now"} {
		if !strings.Contains(html.UnescapeString(status), want) {
			t.Errorf("status page lacks %q:\n%s", want, status)
		}
	}

	// The restricted tier: refused in the console; written by hand and
	// reloaded, still blocked.
	if rc, _ := ask("abuse.example"); rc != mdns.RcodeNameError {
		t.Fatalf("restricted before: %d", rc)
	}
	resp, err = c.PostForm(base+"/it/lists", url.Values{"csrf": {tok}, "group": {"students"}, "kind": {"allow"},
		"entry": {"abuse.example"}, "reason": {"test"}})
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); resp.StatusCode != 400 || !strings.Contains(body, "restricted list") {
		t.Errorf("restricted allow: %d\n%s", resp.StatusCode, body)
	}
	mf := filepath.Join(dir, config.ManagedFileName)
	ml, err := config.ReadManaged(mf)
	if err != nil {
		t.Fatal(err)
	}
	ml.Groups["students"].Allow = append(ml.Groups["students"].Allow, config.ManagedEntry{Entry: "abuse.example", Reason: "by hand"})
	if err := config.WriteManaged(mf, ml); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.apply(cfg); err != nil {
		t.Fatal(err)
	}
	if rc, _ := ask("abuse.example"); rc != mdns.RcodeNameError {
		t.Errorf("a managed allow entry unblocked the restricted tier: rcode %d", rc)
	}
	if out := checkText("abuse.example"); !strings.Contains(out, "BLOCK") || !strings.Contains(out, "restricted") {
		t.Errorf("check on the restricted name:\n%s", out)
	}
}

// TestMistakeReportApprovedInConsole follows a "report a mistake" form
// from the running proxy's block page to the console's mis-block queue,
// where IT approves it: from then on the site is allowed for the group,
// with no restart.
func TestMistakeReportApprovedInConsole(t *testing.T) {
	upstream := testUpstream(t)
	// Once approved, the site is fetched from an origin on loopback
	// (testUpstream answers "origin..." names with 127.0.0.1): any other
	// address is outside this machine, and a dial there may hang.
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "maths puzzles")
	}))
	defer origin.Close()
	_, port, _ := net.SplitHostPort(origin.Listener.Addr().String())
	site := "http://origin.games.example:" + port
	path, _ := writeConfig(t, `
school: {name: Test School}
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy:
  listen: "127.0.0.1:0"
  http: {ports: [`+port+`], ip_networks: [127.0.0.1/32]}
console: {listen: "127.0.0.1:0"}
dns:
  listen: ["127.0.0.1:0"]
  upstreams: ["`+upstream+`"]
lists:
  - {name: games, path: "{{dir}}/games.txt", category: games}
groups:
  students:
    networks: [127.0.0.0/8]
    block: [games]
`, map[string]string{"games.txt": "games.example\n"})
	var out string
	withStdin("copper kettle violin harbour\n", func() {
		_, out, _ = runCLI(t, "--config", path, "accounts", "add", "it@school.example", "--role", "it")
	})
	secret := regexp.MustCompile(`secret=([A-Z2-7]+)`).FindStringSubmatch(out)[1]
	s, _, _ := startServing(t, path)

	// The pupil's side: the block page and its form, through the proxy.
	proxyURL, _ := url.Parse("http://" + s.proxyAddr.String())
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: 5 * time.Second}
	req, _ := http.NewRequest("GET", site+"/maths-puzzles", nil)
	req.Header.Set("Accept", browserAccept) // a page load: the block page and its form
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page := readAll(t, resp)
	ref := resp.Header.Get("X-Gatehouse-Ref")
	if resp.StatusCode != http.StatusForbidden || ref == "" {
		t.Fatalf("block page: %d %q", resp.StatusCode, ref)
	}
	const why = "We use the maths puzzles in year 5 lessons"
	resp, err = hc.PostForm(site+"/.gatehouse/report", reportFormOf(t, page, why))
	if err != nil {
		t.Fatal(err)
	}
	if readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("report: %d", resp.StatusCode)
	}
	s.reports.Writer.Flush()

	// IT's side: the queue shows the reference and the note; approve.
	base := "http://" + s.consoleAddr.String()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	resp, err = c.PostForm(base+"/signin", url.Values{"email": {"it@school.example"}, "password": {"copper kettle violin harbour"}})
	if err != nil {
		t.Fatal(err)
	}
	csrfRE := regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	code, _ := console.TOTPCode(secret, time.Now())
	if resp, err = c.PostForm(base+"/signin/code", url.Values{"code": {code}, "csrf": {csrfRE.FindStringSubmatch(readAll(t, resp))[1]}}); err != nil {
		t.Fatal(err)
	}
	if home := readAll(t, resp); !strings.Contains(home, "Mis-block queue</a>: 1 waiting") {
		t.Errorf("IT's home page:\n%s", home)
	}
	if resp, err = c.Get(base + "/it/queue"); err != nil {
		t.Fatal(err)
	}
	queue := html.UnescapeString(readAll(t, resp))
	action := regexp.MustCompile(`action="(/it/queue/\d+)"`).FindStringSubmatch(queue)
	if !strings.Contains(queue, ref) || !strings.Contains(queue, why) || action == nil {
		t.Fatalf("queue:\n%s", queue)
	}
	if d := s.engine.Load().Decide(policyRequest("origin.games.example")); d.Action.String() != "block" {
		t.Fatalf("before approval: %v", d.Action)
	}
	resp, err = c.PostForm(base+action[1], url.Values{"csrf": {csrfRE.FindStringSubmatch(queue)[1]}, "decision": {"approved"},
		"entry": {"origin.games.example"}, "reason": {"used in year 5 maths"}})
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); resp.StatusCode != 200 || !strings.Contains(body, "Nothing is waiting") {
		t.Fatalf("approve: %d\n%s", resp.StatusCode, body)
	}
	if d := s.engine.Load().Decide(policyRequest("origin.games.example")); d.Action.String() != "allow" {
		t.Errorf("after approval, no restart: %v %v", d.Action, d.Reason)
	}
	resp, err = hc.Get(site + "/maths-puzzles")
	if err != nil {
		t.Fatal(err)
	}
	if readAll(t, resp); resp.StatusCode == http.StatusForbidden || resp.Header.Get("X-Gatehouse-Ref") != "" {
		t.Errorf("the proxy still blocks it: %d", resp.StatusCode)
	}
}

func policyRequest(host string) policy.Request {
	return policy.Request{Client: netip.MustParseAddr("127.0.0.1"), Host: host}
}

// TestConsoleOIDCGoogleHostedDomain: with Google's issuer the console asks
// for the school's Workspace account (the ID token's hd), as the sign-in
// page does; with another provider it does not.
func TestConsoleOIDCGoogleHostedDomain(t *testing.T) {
	t.Setenv("GATEHOUSE_TEST_OIDC_SECRET", "s3cret")
	for issuer, want := range map[string]bool{"https://accounts.google.com": true, "https://accounts.google.com/": true,
		"https://login.microsoftonline.com/tenant/v2.0": false} {
		cfg := &config.Config{}
		cfg.Console.OIDC = &config.ConsoleOIDC{Issuer: issuer, ClientSecret: &config.Secret{Env: "GATEHOUSE_TEST_OIDC_SECRET"}}
		o, err := consoleOIDC(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if o.HostedDomain != want {
			t.Errorf("%s: HostedDomain %v, want %v", issuer, o.HostedDomain, want)
		}
	}
}
