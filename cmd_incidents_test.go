package main

import (
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/gatehouse-filter/gatehouse/console"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// TestDNSIncidentClosedThenReopened follows an incident through the whole
// running Gatehouse: a real DNS query for a blocked high-severity name
// opens it and alerts with a link to the console; the DSL follows the
// link, signs in, closes it with an outcome; the next query reopens it
// and alerts again.
func TestDNSIncidentClosedThenReopened(t *testing.T) {
	upstream := testUpstream(t)
	path, _ := writeConfig(t, `
school: {name: Test School}
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy: {listen: "127.0.0.1:0"}
console: {listen: "127.0.0.1:0", url: "https://console.school.example:8443"}
dns:
  listen: ["127.0.0.1:0"]
  upstreams: ["`+upstream+`"]
lists:
  - name: adult
    path: {{dir}}/adult.txt
    category: pornography
groups:
  students:
    networks: [127.0.0.0/8]
    block: [pornography]
`, map[string]string{"adult.txt": "porn.example\n"})
	const pass = "copper kettle violin harbour"
	var out string
	withStdin(pass+"\n", func() {
		_, out, _ = runCLI(t, "--config", path, "accounts", "add", "dsl@school.example", "--role", "dsl")
	})
	secret := regexp.MustCompile(`secret=([A-Z2-7]+)`).FindStringSubmatch(out)
	if secret == nil {
		t.Fatalf("no secret in %q", out)
	}
	s, _, _ := startServing(t, path)
	st := s.reports.Store
	ask := func(name string) {
		t.Helper()
		m := new(mdns.Msg)
		m.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
		r, _, err := (&mdns.Client{Net: "udp", Timeout: 2 * time.Second}).Exchange(m, s.dns.Addrs()[0].String())
		if err != nil || r.Rcode != mdns.RcodeNameError {
			t.Fatalf("query %s: %v %v", name, r, err)
		}
	}
	// waitAlerts waits (bounded) until incident id has n alerts queued.
	waitAlerts := func(id int64, n int) []reports.SentAlert {
		t.Helper()
		for range 600 {
			a, err := st.Alerts(id)
			if err != nil {
				t.Fatal(err)
			}
			if len(a) >= n {
				return a
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("incident %d: fewer than %d alerts after 60 s", id, n)
		return nil
	}

	ask("www.porn.example")
	var id int64
	for range 600 {
		if list, _, _ := st.IncidentPage(reports.IncidentQuery{AnySeverity: true}); len(list) == 1 {
			id = list[0].ID
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if id == 0 {
		t.Fatal("no incident after the query")
	}
	waitAlerts(id, 1)
	var text string
	if err := st.DB().QueryRow(`SELECT text_body FROM outbox WHERE incident_id = ?`, id).Scan(&text); err != nil {
		t.Fatal(err)
	}
	link := "https://console.school.example:8443/incidents/" + strconv.FormatInt(id, 10)
	if !strings.Contains(text, link) {
		t.Fatalf("alert lacks %s:\n%s", link, text)
	}

	// The link's path on the running console: sign-in first, then the incident.
	base := "http://" + s.consoleAddr.String()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	get := func(u string) (string, string) {
		t.Helper()
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Request.URL.Path, readAll(t, resp)
	}
	post := func(u string, v url.Values) (string, string) {
		t.Helper()
		resp, err := c.PostForm(u, v)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Request.URL.Path, readAll(t, resp)
	}
	field := func(body, name string) string {
		m := regexp.MustCompile(`name="` + name + `" value="([^"]*)"`).FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no %s in:\n%s", name, body)
		}
		return strings.ReplaceAll(m[1], "&amp;", "&")
	}
	at, body := get(base + strings.TrimPrefix(link, "https://console.school.example:8443"))
	if at != "/signin" {
		t.Fatalf("the link without a session: at %s", at)
	}
	if at, body = post(base+"/signin", url.Values{"email": {"dsl@school.example"}, "password": {pass}, "next": {field(body, "next")}}); at != "/signin/code" {
		t.Fatalf("after the password: at %s", at)
	}
	code, _ := console.TOTPCode(secret[1], time.Now())
	at, body = post(base+"/signin/code", url.Values{"code": {code}, "csrf": {field(body, "csrf")}, "next": {field(body, "next")}})
	incPath := "/incidents/" + strconv.FormatInt(id, 10)
	if at != incPath || !strings.Contains(body, "www.porn.example") {
		t.Fatalf("after sign-in: at %s\n%s", at, body)
	}
	_, body = post(base+incPath+"/state", url.Values{"csrf": {field(body, "csrf")}, "seen": {field(body, "seen")}, "state": {"closed"}, "outcome": {"spoken to pupil"}})
	if !strings.Contains(body, "Status: <strong>closed</strong>") {
		t.Fatalf("not closed:\n%s", body)
	}

	// The next attempt reopens it and alerts again.
	ask("other.porn.example")
	alerts := waitAlerts(id, 2)
	if !strings.Contains(alerts[1].Subject, "pornography") {
		t.Fatalf("second alert: %+v", alerts[1])
	}
	_, body = get(base + incPath)
	if !strings.Contains(body, "reopened after it was closed") || !strings.Contains(body, "other.porn.example") {
		t.Fatalf("incident after the new attempt:\n%s", body)
	}
}
