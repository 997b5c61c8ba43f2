package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// TestTranslateProxyEndToEnd: a pupil opening a blocked site through
// Google Translate's website proxy (www-porn-example.translate.goog) gets
// the block answer from the resolver, and the Wayback Machine's copy of it
// through the proxy gets the block page; the events record bypass
// attempts naming the list's entry, and `gatehouse check` says why.
func TestTranslateProxyEndToEnd(t *testing.T) {
	upstream := testUpstream(t)
	path, _ := writeConfig(t, `
school: {name: Test School}
database: {{dir}}/gatehouse.db
proxy: {listen: "127.0.0.1:0"}
dns:
  listen: ["127.0.0.1:0"]
  upstreams: ["`+upstream+`"]
lists:
  - {name: adult, path: "{{dir}}/adult.txt", category: pornography}
groups:
  students:
    networks: [127.0.0.0/8]
    block: [pornography]
`, map[string]string{"adult.txt": "porn.example\n"})
	s, _, stop := startServing(t, path)
	c := &mdns.Client{Net: "udp", Timeout: 2 * time.Second}
	ask := func(name string) *mdns.Msg {
		t.Helper()
		m := new(mdns.Msg)
		m.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
		r, _, err := c.Exchange(m, s.dns.Addrs()[0].String())
		if err != nil {
			t.Fatalf("query %s: %v", name, err)
		}
		return r
	}
	if r := ask("www-porn-example.translate.goog"); r.Rcode != mdns.RcodeNameError {
		t.Fatalf("translated blocked site: %v", r)
	}
	if r := ask("www-bbc-example.translate.goog"); r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("translated allowed site: %v", r)
	}
	proxyURL, _ := url.Parse("http://" + s.proxyAddr.String())
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: 5 * time.Second}
	resp, err := hc.Get("http://web.archive.org/web/20200101000000/https://www.porn.example/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "Test School") {
		t.Fatalf("archived blocked site through the proxy: %d %.300s", resp.StatusCode, body)
	}
	stop()

	code, out, errs := runCLI(t, "events", "--config", path, "--since", "1h", "--json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 {
		t.Fatalf("events: %d\n%s%s", code, out, errs)
	}
	for i, name := range []string{"www-porn-example.translate.goog", "web.archive.org"} {
		var ev map[string]any
		if err := json.Unmarshal([]byte(lines[i]), &ev); err != nil {
			t.Fatal(err)
		}
		if ev["name"] != name || ev["bypass"] != true || ev["category"] != "pornography" || ev["entry"] != "porn.example" {
			t.Errorf("event %v", ev)
		}
	}
	code, out, _ = runCLI(t, "check", "--config", path, "--client", "127.0.0.1", "www-porn-example.translate.goog")
	if code != 0 || !strings.Contains(out, "BLOCK") || !strings.Contains(out, "serves www.porn.example here") {
		t.Errorf("check:\n%s", out)
	}
}
