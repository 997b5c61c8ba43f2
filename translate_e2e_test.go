package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// TestTranslateProxyEndToEnd: a pupil opening a blocked site through
// Google Translate's website proxy (www-porn-example.translate.goog) gets
// the block answer from the resolver, the event records a bypass attempt
// naming the list's entry, and `gatehouse check` says why.
func TestTranslateProxyEndToEnd(t *testing.T) {
	upstream := testUpstream(t)
	path, _ := writeConfig(t, `
school: {name: Test School}
database: {{dir}}/gatehouse.db
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
	stop()

	code, out, errs := runCLI(t, "events", "--config", path, "--since", "1h", "--json")
	var ev map[string]any
	if code != 0 || json.Unmarshal([]byte(strings.TrimSpace(out)), &ev) != nil {
		t.Fatalf("events: %d\n%s%s", code, out, errs)
	}
	if ev["name"] != "www-porn-example.translate.goog" || ev["bypass"] != true || ev["category"] != "pornography" || ev["entry"] != "porn.example" {
		t.Errorf("event %v", ev)
	}
	code, out, _ = runCLI(t, "check", "--config", path, "--client", "127.0.0.1", "www-porn-example.translate.goog")
	if code != 0 || !strings.Contains(out, "BLOCK") || !strings.Contains(out, "Google Translate") || !strings.Contains(out, "www.porn.example") {
		t.Errorf("check:\n%s", out)
	}
}
