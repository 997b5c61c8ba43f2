package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	mdns "github.com/miekg/dns"

	"github.com/gatehouse-filter/gatehouse/console"
	"github.com/gatehouse-filter/gatehouse/internal/browsertest"
)

// TestBrowserServeAlertToIncident is the whole path in a real Gatehouse:
// a pupil's DNS query for a self-harm site, the alert mailed over SMTP
// with the incident's link (console.url), the DSL clicking it in webmail
// (a page on another site) in chromium, signing in with password and
// authenticator code and landing on the incident that names the site.
// Skipped where chromium is not installed (.ci/run installs it).
func TestBrowserServeAlertToIncident(t *testing.T) {
	browsertest.Chromium(t) // skip before building anything
	// console.url must name the console's port before it listens.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	consoleAddr := ln.Addr().String()
	ln.Close()
	upstream := testUpstream(t)
	ib := newInbox(t)
	path, _ := writeConfig(t, `
school: {name: Test School}
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy: {listen: "127.0.0.1:0"}
console: {listen: "`+consoleAddr+`", url: "http://`+consoleAddr+`/"}
dns:
  listen: ["127.0.0.1:0"]
  upstreams: ["`+upstream+`"]
lists:
  - {name: harm, path: "{{dir}}/harm.txt", category: self-harm}
groups:
  students:
    networks: [127.0.0.0/8]
    block: [self-harm]
`+ib.smtpConfig(), map[string]string{"harm.txt": "harm.example\n"})
	const pass = "copper kettle violin harbour"
	var code int
	var out string
	withStdin(pass+"\n", func() {
		code, out, _ = runCLI(t, "--config", path, "accounts", "add", "dsl@school.example", "--role", "dsl")
	})
	secret := regexp.MustCompile(`secret=([A-Z2-7]+)`).FindStringSubmatch(out)
	if code != exitOK || secret == nil {
		t.Fatalf("accounts add: %d %q", code, out)
	}
	s, _, _ := startServing(t, path)
	if s.consoleAddr == nil || s.consoleAddr.String() != consoleAddr {
		t.Fatalf("console at %v, want %s", s.consoleAddr, consoleAddr)
	}
	if r := askDNS(t, s.dns.Addrs()[0].String(), "www.harm.example"); r.Rcode != mdns.RcodeNameError {
		t.Fatalf("blocked name answered %v", r)
	}
	mail := decodeMail(ib.waitFor(t, 0, "alert", 30*time.Second))
	link := regexp.MustCompile(`http://` + regexp.QuoteMeta(consoleAddr) + `/incidents/(\d+)`).FindStringSubmatch(mail)
	if link == nil {
		t.Fatalf("no incident link in the alert:\n%s", mail)
	}
	webmail := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>Webmail</title><a id="open" href="%s">Open the incident</a>`, link[0])
	}))
	defer webmail.Close()

	tab := browsertest.Start(t)
	text := func() string {
		v, _ := chromedp.Run(tab, chromedp.Evaluate[string](`location.pathname + "\n" + document.body.innerText`))
		return v
	}
	// settle waits (bounded) past a page that moves on by itself.
	settle := func() {
		for range 200 {
			if moving, err := chromedp.Run(tab, chromedp.Evaluate[bool](
				`document.readyState !== "complete" || document.querySelector('meta[http-equiv="refresh"]') !== null`)); err == nil && !moving {
				return
			}
			time.Sleep(25 * time.Millisecond)
		}
	}
	step := func(what string, a chromedp.Action[chromedp.Void], navigates bool) {
		t.Helper()
		var err error
		if navigates {
			_, err = chromedp.RunResponse(tab, a)
			settle()
		} else {
			err = chromedp.Do(tab, a)
		}
		if err != nil {
			t.Fatalf("%s: %v\n%s", what, err, text())
		}
	}
	// Webmail is on localhost, the console on 127.0.0.1: another site.
	step("open webmail", chromedp.Navigate(strings.Replace(webmail.URL, "127.0.0.1", "localhost", 1)), true)
	step("click the alert's link", chromedp.Click(chromedp.CSS("#open"), chromedp.NodeVisible), true)
	if p := text(); !strings.HasPrefix(p, "/signin\n") || strings.Contains(p, "harm.example") {
		t.Fatalf("the link without a session:\n%s", p)
	}
	step("email", chromedp.SetValue(chromedp.CSS("#email"), "dsl@school.example"), false)
	step("password", chromedp.SetValue(chromedp.CSS("#password"), pass), false)
	step("sign in", chromedp.Click(chromedp.CSS(`form[action="/signin"] button`)), true)
	totp, err := console.TOTPCode(secret[1], time.Now())
	if err != nil {
		t.Fatal(err)
	}
	step("code", chromedp.SetValue(chromedp.CSS("#code"), totp), false)
	step("continue", chromedp.Click(chromedp.CSS(`form[action="/signin/code"] button`)), true)
	if p := text(); !strings.HasPrefix(p, "/incidents/"+link[1]+"\n") || !strings.Contains(p, "Incident #"+link[1]) || !strings.Contains(p, "harm.example") {
		t.Fatalf("after sign-in:\n%s", p)
	}
}
