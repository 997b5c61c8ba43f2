package main

import (
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/console"
)

// TestReloadAndConsoleKeepEachOthersChanges: a reload (SIGHUP, the
// watcher) reads the config files, then applies them; a console change
// or another reload may be applied in between. The config read first must
// not then be published over the one read later: IT's allow entry saved
// in the console meanwhile, and a config edit reloaded meanwhile, both
// stay live.
func TestReloadAndConsoleKeepEachOthersChanges(t *testing.T) {
	upstream := testUpstream(t)
	body := strings.Replace(itServeConfig, "UPSTREAM", upstream, 1)
	path, dir := writeConfig(t, body, map[string]string{"adult.txt": "porn.example\n", "iwf.txt": sha("abuse.example") + "\n"})
	var out string
	withStdin("copper kettle violin harbour\n", func() {
		_, out, _ = runCLI(t, "--config", path, "accounts", "add", "it@school.example", "--role", "it")
	})
	secret := regexp.MustCompile(`secret=([A-Z2-7]+)`).FindStringSubmatch(out)[1]
	s, _, _ := startServing(t, path)

	dnsAddr := s.dns.Addrs()[0].String()
	ask := func(name string) int {
		t.Helper()
		q := new(mdns.Msg)
		q.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
		r, _, err := (&mdns.Client{Net: "udp", Timeout: 5 * time.Second}).Exchange(q, dnsAddr)
		if err != nil {
			t.Fatal(err)
		}
		return r.Rcode
	}
	base := "http://" + s.consoleAddr.String()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	resp, err := c.PostForm(base+"/signin", url.Values{"email": {"it@school.example"}, "password": {"copper kettle violin harbour"}})
	if err != nil {
		t.Fatal(err)
	}
	csrfRE := regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	code, _ := console.TOTPCode(secret, time.Now())
	if resp, err = c.PostForm(base+"/signin/code", url.Values{"code": {code}, "csrf": {csrfRE.FindStringSubmatch(readAll(t, resp))[1]}}); err != nil {
		t.Fatal(err)
	}
	tok := csrfRE.FindStringSubmatch(readAll(t, resp))[1]

	// A SIGHUP reads the files; before it applies them, IT allows a site.
	sighup, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = c.PostForm(base+"/it/lists", url.Values{"csrf": {tok}, "group": {"students"}, "kind": {"allow"},
		"entry": {"porn.example"}, "reason": {"sex education lesson, year 10"}})
	if err != nil {
		t.Fatal(err)
	}
	if p := readAll(t, resp); resp.StatusCode != 200 || !strings.Contains(p, "is now on group students") {
		t.Fatalf("add: %d\n%s", resp.StatusCode, p)
	}
	if rc := ask("www.porn.example"); rc != mdns.RcodeSuccess {
		t.Fatalf("after the add: rcode %d", rc)
	}
	s.reload(sighup) // the SIGHUP's apply, after the console's
	if rc := ask("www.porn.example"); rc != mdns.RcodeSuccess {
		t.Errorf("a reload read before the console's change undid it: rcode %d", rc)
	}

	// The same between two reloads: a deny entry written into the config
	// and reloaded stays when a reload read before it applies after.
	stale, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(body, "block: [pornography]", "block: [pornography]\n    deny: [news.example]", 1)
	reloadFile(t, s, path, dir, edited)
	if rc := ask("news.example"); rc != mdns.RcodeNameError {
		t.Fatalf("after the config edit: rcode %d", rc)
	}
	s.reload(stale)
	if rc := ask("news.example"); rc != mdns.RcodeNameError {
		t.Errorf("a reload read before the config edit undid it: rcode %d", rc)
	}
	if rc := ask("www.porn.example"); rc != mdns.RcodeSuccess {
		t.Errorf("the console's entry after both: rcode %d", rc)
	}
}
