package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-filter/gatehouse/reports"
)

// TestContentAlertReachesDSL runs a real Gatehouse (SQLite store, SMTP to
// a real server): a page a pupil reads whose text reaches the self-harm
// report threshold passes whole and is mailed to the DSL at once; a page
// over the block threshold gets the block notice, and its block is in
// the store by the time the notice arrives.
func TestContentAlertReachesDSL(t *testing.T) {
	upstream := testUpstream(t)
	ib := newInbox(t)
	const flagged = "I want to die. I will kill myself. I want to end my life. Everyone is better off dead."
	const blocked = flagged + " Suicide. Self harm. I will hang myself."
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		text := flagged
		if r.URL.Path == "/blocked" {
			text = blocked
		}
		_, _ = io.WriteString(w, "<html><body><p>"+text+"</p><p>THE END</p></body></html>")
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
groups:
  students:
    networks: [127.0.0.0/8]
    block: [pornography]
`+ib.smtpConfig(), nil)
	s, _, _ := startServing(t, path)
	proxyURL, _ := url.Parse("http://" + s.proxyAddr.String())
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: 5 * time.Second}
	get := func(p string) string {
		t.Helper()
		resp, err := hc.Get("http://127.0.0.1:" + port + p)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(body)
	}
	if body := get("/page"); !strings.Contains(body, "THE END") {
		t.Fatalf("flagged page changed: %q", body)
	}
	m := decodeMail(ib.waitFor(t, 0, "CRITICAL alert: self-harm and suicide", 30*time.Second))
	if !strings.Contains(m, "To: <dsl@school.example>") {
		t.Errorf("alert:\n%s", m)
	}
	body := get("/blocked")
	if !strings.Contains(body, "The rest of this page is blocked") || strings.Contains(body, "THE END") {
		t.Fatalf("blocked page: %q", body)
	}
	// Durable before the notice went: in the store now, no waiting.
	var evs []reports.StoredEvent
	if err := s.reports.Store.Events(reports.Filter{Since: time.Now().Add(-time.Hour)}, func(ev reports.StoredEvent) error {
		evs = append(evs, ev)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ev := range evs {
		if ev.Action == "block" && ev.Reason == "content" && ev.Category == "self-harm" && strings.HasSuffix(ev.URL, "/blocked") &&
			ev.Ref != "" && strings.Contains(body, ev.Ref) && strings.Contains(ev.Entry, "hang myself") {
			found = true
		}
	}
	if !found {
		t.Errorf("the content block is not in the store: %+v", evs)
	}
}
