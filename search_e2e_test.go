package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-filter/gatehouse/reports"
	"github.com/gatehouse-filter/gatehouse/watchlist"
)

// TestSearchAlertReachesDSL runs a real Gatehouse: a pupil's misspelt
// suicide-related search through the proxy is allowed (the site is not
// blocked), recorded with its term, and mailed to the DSL at once, over
// SMTP to a real server, saying what was searched for and where. A term
// from the school's own watchlist file is flagged too.
func TestSearchAlertReachesDSL(t *testing.T) {
	upstream := testUpstream(t)
	ib := newInbox(t)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "results")
	}))
	defer origin.Close()
	_, port, _ := net.SplitHostPort(origin.Listener.Addr().String())
	path, _ := writeConfig(t, `
school: {name: Test School}
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy:
  listen: "127.0.0.1:0"
  http: {ports: [80, `+port+`], ip_networks: [127.0.0.1/32]}
dns:
  listen: ["127.0.0.1:0"]
  upstreams: ["`+upstream+`"]
watchlists:
  files:
    - {theme: bullying, path: "{{dir}}/local-bullying.txt"}
  search_engines:
    - {name: Origin Search, hosts: [origin-search.example], paths: [/search], param: q}
groups:
  students:
    networks: [127.0.0.0/8]
    block: [pornography]
`+ib.smtpConfig(), map[string]string{"local-bullying.txt": "# our school's words\nfreeze them out | 10\n"})
	s, _, _ := startServing(t, path)
	proxyURL, _ := url.Parse("http://" + s.proxyAddr.String())
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: 5 * time.Second}
	search := func(q string) {
		t.Helper()
		resp, err := hc.Get("http://origin-search.example:" + port + "/search?q=" + url.QueryEscape(q))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "results" {
			t.Fatalf("search %q: %d %q", q, resp.StatusCode, body)
		}
	}
	search("how to kil mys3lf")
	m := decodeMail(ib.waitFor(t, 0, "CRITICAL alert: self-harm and suicide", 30*time.Second))
	for _, want := range []string{"To: <dsl@school.example>", "searched for “how to kil mys3lf” on Origin Search", "speak to the child today"} {
		if !strings.Contains(m, want) {
			t.Errorf("alert lacks %q:\n%s", want, m)
		}
	}
	search("how do we freeze them out")
	// A flag's answer does not wait for its event: the writer stores it
	// a moment later.
	for i := 0; ; i++ {
		code, out, errs := runCLI(t, "events", "--config", path, "--since", "1h", "--csv")
		if code == 0 && strings.Contains(out, "how to kil mys3lf") && strings.Contains(out, "how do we freeze them out") && strings.Contains(out, "bullying") {
			break
		}
		if i == 100 {
			t.Fatalf("events: %d\n%s\n%s", code, out, errs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	inc, err := s.reports.Store.Incidents(reports.Filter{Since: time.Now().Add(-time.Hour)})
	if err != nil || len(inc) != 2 {
		t.Fatalf("incidents %+v, %v", inc, err)
	}
}

// TestWatchlistReload: a reload applies a changed watchlist file; a
// broken one is refused with its file and line, and the running watchlist
// stays in force.
func TestWatchlistReload(t *testing.T) {
	upstream := testUpstream(t)
	body := `
school: {name: Test School}
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy: {listen: "127.0.0.1:0"}
dns: {listen: ["127.0.0.1:0"], upstreams: ["` + upstream + `"]}
watchlists:
  files: [{theme: drugs, path: "{{dir}}/local.txt"}]
`
	path, dir := writeConfig(t, body, map[string]string{"local.txt": "blue sweets | 10\n"})
	log := new(lockedBuffer)
	s := startServingLog(t, path, log)
	over := func(term string) bool {
		r := s.engine.Load().Watchlist().NewScorer().Score(term)
		return r.Over && r.Best == watchlist.Drugs
	}
	if !over("where to get blue sweets") {
		t.Fatal("local phrase not in force")
	}
	local := filepath.Join(dir, "local.txt")
	if err := os.WriteFile(local, []byte("blue sweets | 10\ngreen sweets | lots\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reloadFile(t, s, path, dir, body)
	logged := log.String()
	if !strings.Contains(logged, local+":2: weight") || !over("blue sweets") {
		t.Fatalf("broken file: running watchlist lost or not logged:\n%s", logged)
	}
	if err := os.WriteFile(local, []byte("green sweets | 10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reloadFile(t, s, path, dir, body)
	if !over("green sweets") || over("blue sweets") {
		t.Fatal("the fixed file was not applied")
	}
}
