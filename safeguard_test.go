package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	smtp "github.com/emersion/go-smtp"
	mdns "github.com/miekg/dns"

	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// inbox is a real SMTP server on loopback that keeps what it accepts.
type inbox struct {
	port int
	mu   sync.Mutex
	msgs []string // raw messages
	got  chan struct{}
}

func newInbox(t *testing.T) *inbox {
	t.Helper()
	ib := &inbox{got: make(chan struct{}, 100)}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &inboxSession{ib}, nil }))
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ib.port = ln.Addr().(*net.TCPAddr).Port
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ib
}

type inboxSession struct{ ib *inbox }

func (s *inboxSession) Reset()                               {}
func (s *inboxSession) Logout() error                        { return nil }
func (s *inboxSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *inboxSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *inboxSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.ib.mu.Lock()
	s.ib.msgs = append(s.ib.msgs, string(b))
	s.ib.mu.Unlock()
	select {
	case s.ib.got <- struct{}{}:
	default:
	}
	return nil
}

func (ib *inbox) all() []string {
	ib.mu.Lock()
	defer ib.mu.Unlock()
	return append([]string(nil), ib.msgs...)
}

// waitFor waits for a message whose subject contains want, after the
// first skip messages, and returns it.
func (ib *inbox) waitFor(t *testing.T, skip int, want string, within time.Duration) string {
	t.Helper()
	deadline := time.After(within)
	for {
		msgs := ib.all()
		for _, m := range msgs[min(skip, len(msgs)):] {
			if subjectOf(m) != "" && strings.Contains(subjectOf(m), want) {
				return m
			}
		}
		select {
		case <-ib.got:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			var subs []string
			for _, m := range ib.all() {
				subs = append(subs, subjectOf(m))
			}
			t.Fatalf("no mail with %q in its subject within %s; got %q", want, within, subs)
		}
	}
}

func subjectOf(raw string) string {
	m, err := mail.ReadMessage(strings.NewReader(raw))
	if err != nil {
		return ""
	}
	s, err := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
	if err != nil {
		return m.Header.Get("Subject")
	}
	return s
}

// smtpConfig is the reports: section that sends to ib.
func (ib *inbox) smtpConfig() string {
	return `reports:
  recipients:
    dsl: [dsl@school.example]
    it: [it@school.example]
  smtp: {host: 127.0.0.1, port: ` + strconv.Itoa(ib.port) + `, tls: none, from: gatehouse@school.example}
  digests:
    - {name: daily, cron: "30 7 * * 1-5", recipients: [dsl, it]}
`
}

func askDNS(t *testing.T, addr, name string) *mdns.Msg {
	t.Helper()
	c := &mdns.Client{Net: "udp", Timeout: 2 * time.Second}
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("query %s: %v", name, err)
	}
	return r
}

// TestAckDoesNotSilenceRepeat: a pupil looks up a self-harm site, the DSL
// is alerted and acknowledges the incident with `gatehouse incidents
// --ack`, then the pupil tries again a minute later (inside the incident
// window). The repeat must reach the DSL as a new alert; before, the
// acknowledged incident swallowed every later attempt.
func TestAckDoesNotSilenceRepeat(t *testing.T) {
	upstream := testUpstream(t)
	ib := newInbox(t)
	path, _ := writeConfig(t, `
school: {name: Test School}
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy: {listen: "127.0.0.1:0"}
dns:
  listen: ["127.0.0.1:0"]
  upstreams: ["`+upstream+`"]
  events: {collapse: 1s}
lists:
  - {name: harm, path: "{{dir}}/harm.txt", category: self-harm}
groups:
  students:
    networks: [127.0.0.0/8]
    block: [self-harm]
`+ib.smtpConfig(), map[string]string{"harm.txt": "harm.example\n"})
	s, _, _ := startServing(t, path)
	addr := s.dns.Addrs()[0].String()

	if r := askDNS(t, addr, "www.harm.example"); r.Rcode != mdns.RcodeNameError {
		t.Fatalf("blocked name: %v", r)
	}
	ib.waitFor(t, 0, "alert", 30*time.Second)
	seen := len(ib.all())

	code, out, errs := runCLI(t, "incidents", "--config", path, "--ack", "1")
	if code != 0 {
		t.Fatalf("incidents --ack 1: %d %s %s", code, out, errs)
	}
	if r := askDNS(t, addr, "www.harm.example"); r.Rcode != mdns.RcodeNameError {
		t.Fatalf("blocked name: %v", r)
	}
	m := ib.waitFor(t, seen, "alert", 30*time.Second)
	if !strings.Contains(subjectOf(m), "HIGH") && !strings.Contains(subjectOf(m), "CRITICAL") {
		t.Errorf("the repeat's alert: %s", subjectOf(m))
	}
	code, out, _ = runCLI(t, "incidents", "--config", path, "--since", "1h", "--json")
	if code != 0 || !strings.Contains(out, `"status":"alerted"`) {
		t.Errorf("the incident is not open again after the repeat:\n%s", out)
	}
}

// TestMistakeReportReachesIT follows a "report a mistake" form from the
// block page to IT: the form is posted through the running proxy, stored
// in the breach store with its reference and note, mailed to the it role
// at once, listed in IT's digest and exported by `gatehouse events
// --mistakes`. Before, it went to a JSON-lines file nobody was told about.
// gamesPage is a running Gatehouse whose students are blocked from
// games.example, with mail to a test inbox, and the block page of
// http://www.games.example/maths-puzzles fetched through its proxy as a
// browser does.
type gamesPage struct {
	path string // the config
	ib   *inbox
	s    *server
	hc   *http.Client // through the proxy
	resp *http.Response
	page []byte
}

func gamesBlockPage(t *testing.T) gamesPage {
	t.Helper()
	upstream := testUpstream(t)
	ib := newInbox(t)
	path, _ := writeConfig(t, `
school: {name: Test School}
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy: {listen: "127.0.0.1:0"}
dns:
  listen: ["127.0.0.1:0"]
  upstreams: ["`+upstream+`"]
lists:
  - {name: games, path: "{{dir}}/games.txt", category: games}
groups:
  students:
    networks: [127.0.0.0/8]
    block: [games]
`+ib.smtpConfig(), map[string]string{"games.txt": "games.example\n"})
	s, _, _ := startServing(t, path)
	proxyURL, _ := url.Parse("http://" + s.proxyAddr.String())
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: 5 * time.Second}
	req, _ := http.NewRequest("GET", "http://www.games.example/maths-puzzles", nil)
	req.Header.Set("Accept", browserAccept)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return gamesPage{path, ib, s, hc, resp, page}
}

func TestMistakeReportReachesIT(t *testing.T) {
	g := gamesBlockPage(t)
	path, ib, s, hc, resp, page := g.path, g.ib, g.s, g.hc, g.resp, g.page
	ref := resp.Header.Get("X-Gatehouse-Ref")
	if resp.StatusCode != http.StatusForbidden || ref == "" || !strings.Contains(string(page), `action="/.gatehouse/report"`) {
		t.Fatalf("block page: %d ref %q\n%s", resp.StatusCode, ref, page)
	}
	const why = "We use the maths puzzles in year 5 lessons"
	resp, err := hc.PostForm("http://www.games.example/.gatehouse/report", reportFormOf(t, string(page), why))
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "recorded for IT") || !strings.Contains(string(page), "emailed to them within 5 minutes") {
		t.Fatalf("report: %d\n%s", resp.StatusCode, page)
	}

	// Mailed to IT at once.
	m := ib.waitFor(t, 0, "reported as a mistake", 30*time.Second)
	for _, want := range []string{ref, why, "games.example/maths-puzzles", "To: <it@school.example>"} {
		if !strings.Contains(strings.ReplaceAll(m, "=\r\n", ""), want) {
			t.Errorf("IT's mail lacks %q:\n%s", want, m)
		}
	}
	// In the store.
	ms, err := s.reports.Store.Mistakes(reports.Filter{Since: time.Now().Add(-time.Hour)})
	if err != nil || len(ms) != 1 || ms[0].Ref != ref || ms[0].Note != why || ms[0].Name != "www.games.example" {
		t.Fatalf("stored reports %+v, %v", ms, err)
	}
	// In IT's digest.
	seen := len(ib.all())
	if code, out, errs := runCLI(t, "report", "send", "--config", path, "--schedule", "daily"); code != 0 {
		t.Fatalf("report send: %d %s %s", code, out, errs)
	}
	var digest string
	for _, raw := range ib.all()[seen:] {
		if strings.Contains(raw, "To: <it@school.example>") {
			digest = strings.ReplaceAll(raw, "=\r\n", "")
		}
	}
	if !strings.Contains(digest, "REPORTED AS MISTAKES") || !strings.Contains(digest, ref) || !strings.Contains(digest, why) {
		t.Errorf("IT's digest does not list the report:\n%s", digest)
	}
	// Exported.
	code, out, errs := runCLI(t, "events", "--config", path, "--since", "1h", "--mistakes", "--csv")
	if code != 0 || !strings.Contains(out, ref) || !strings.Contains(out, why) || !strings.Contains(out, "www.games.example") {
		t.Fatalf("events --mistakes --csv: %d\n%s\n%s", code, out, errs)
	}
	code, out, _ = runCLI(t, "events", "--config", path, "--since", "1h", "--mistakes")
	if code != 0 || !strings.Contains(out, ref) || !strings.Contains(out, why) {
		t.Fatalf("events --mistakes: %d\n%s", code, out)
	}
}

// decodeMail returns a raw message's headers and every part decoded
// (quoted-printable, base64), so a search sees what a reader sees.
func decodeMail(raw string) string {
	m, err := mail.ReadMessage(strings.NewReader(raw))
	if err != nil {
		return raw
	}
	var out strings.Builder
	for k, v := range m.Header {
		s, _ := new(mime.WordDecoder).DecodeHeader(strings.Join(v, " "))
		out.WriteString(k + ": " + s + "\n")
	}
	var walk func(h map[string][]string, body io.Reader)
	walk = func(h map[string][]string, body io.Reader) {
		get := func(k string) string {
			if v := h[k]; len(v) > 0 {
				return v[0]
			}
			return ""
		}
		mt, params, _ := mime.ParseMediaType(get("Content-Type"))
		if strings.HasPrefix(mt, "multipart/") {
			mr := multipart.NewReader(body, params["boundary"])
			for {
				p, err := mr.NextRawPart()
				if err != nil {
					return
				}
				walk(p.Header, p)
			}
		}
		var r io.Reader = body
		switch strings.ToLower(get("Content-Transfer-Encoding")) {
		case "quoted-printable":
			r = quotedprintable.NewReader(body)
		case "base64":
			r = base64.NewDecoder(base64.StdEncoding, body)
		}
		b, _ := io.ReadAll(r)
		out.Write(b)
		out.WriteString("\n")
	}
	walk(m.Header, m.Body)
	return out.String()
}

// TestRestrictedNeverStoredInPlainText runs a real Gatehouse with a hashed
// IWF list, debug logging and the full query log on, and touches a listed
// name and a listed URL every way a pupil could: DNS (in two spellings),
// plain HTTP and CONNECT through the proxy, and a hand-made "report a
// mistake" form naming the site (refused: only a block page's form is
// taken, and the restricted page has none). Then alerts and a digest are mailed and
// everything is exported. No file Gatehouse wrote (database, WAL, shared
// memory, log, outbox, list cache), no mail, no export and no metrics
// scrape may contain the name or URL in any case; the record keeps the
// entry's SHA-256 instead, which the export shows.
func TestRestrictedNeverStoredInPlainText(t *testing.T) {
	upstream := testUpstream(t)
	ib := newInbox(t)
	const (
		name    = "secretabuse.example" // a hashed name entry
		urlHost = "cdn-host.example"    // allowed itself ...
		urlPath = "/iwf-hidden-path"    // ... but this path is a hashed URL entry
		nameURL = "http://www.secretabuse.example/hidden/page.html"
	)
	path, dir := writeConfig(t, `
school: {name: Test School}
database: {{dir}}/gatehouse.db
log: {level: debug, format: text}
admin: {listen: "127.0.0.1:0"}
proxy: {listen: "127.0.0.1:0"}
dns:
  listen: ["127.0.0.1:0"]
  upstreams: ["`+upstream+`"]
  query_log: {enabled: true}
  events: {collapse: 1s}
lists:
  - {name: iwf, path: "{{dir}}/iwf.txt", category: iwf, format: sha256}
groups:
  students:
    networks: [127.0.0.0/8]
    block: []
`+ib.smtpConfig(), map[string]string{"iwf.txt": sha(name) + "\n" + sha(urlHost+urlPath) + "\n"})
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "gatehouse.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{log: newLogger(cfg, logFile, new(slog.LevelVar)), cfgPath: path}
	if err := s.start(ctx, cfg); err != nil {
		cancel()
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			s.stopDNS()
			s.stopProxy()
			s.stopReports()
			cancel()
		})
	}
	defer stop()

	dnsAddr := s.dns.Addrs()[0].String()
	for _, q := range []string{"www." + name, "WWW.SecretAbuse.EXAMPLE", name} {
		if r := askDNS(t, dnsAddr, q); r.Rcode == mdns.RcodeSuccess && len(r.Answer) > 0 {
			if a, ok := r.Answer[0].(*mdns.A); ok && a.A.String() == "192.0.2.1" {
				t.Fatalf("%s was answered: %v", q, r)
			}
		}
	}
	askDNS(t, dnsAddr, urlHost) // allowed: in the query log

	proxyURL, _ := url.Parse("http://" + s.proxyAddr.String())
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: 5 * time.Second}
	var refs []string
	for _, u := range []string{nameURL, "http://" + urlHost + urlPath + "/img.jpg?x=1", "http://" + strings.ToUpper(name) + "/Other"} {
		resp, err := hc.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "not available") {
			t.Fatalf("GET %s: %d\n%s", u, resp.StatusCode, body)
		}
		refs = append(refs, resp.Header.Get("X-Gatehouse-Ref"))
	}
	if resp, err := hc.Get("https://" + name + "/"); err == nil { // CONNECT: refused
		resp.Body.Close()
		t.Fatalf("CONNECT to a restricted name: %d", resp.StatusCode)
	}
	// A hand-made form: the restricted page has none, so it has no
	// block page's token and is refused, not stored.
	form := url.Values{"ref": {refs[0]}, "url": {nameURL}, "why": {"Please unblock " + name + " and " + nameURL}}
	resp, err := hc.PostForm("http://"+name+"/.gatehouse/report", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("hand-made report: %d, want 403", resp.StatusCode)
	}

	// Alerts go out; then a digest.
	ib.waitFor(t, 0, "IWF", 30*time.Second)
	s.reports.Writer.Flush()
	if code, out, errs := runCLI(t, "report", "send", "--config", path, "--schedule", "daily"); code != 0 {
		t.Fatalf("report send: %d %s %s", code, out, errs)
	}
	var scraped string
	if resp, err := http.Get("http://" + s.admin.String() + "/metrics"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		scraped = string(b)
	}
	if !strings.Contains(scraped, "gatehouse_") {
		t.Fatalf("metrics scrape: %.300s", scraped)
	}

	secrets := []string{"secretabuse", "iwf-hidden-path", name, nameURL, urlHost + urlPath}
	check := func(what, data string) {
		t.Helper()
		low := strings.ToLower(data)
		for _, sec := range secrets {
			if strings.Contains(low, strings.ToLower(sec)) {
				i := strings.Index(low, strings.ToLower(sec))
				t.Errorf("%s contains %q: …%s…", what, sec, data[max(0, i-80):min(len(data), i+80)])
			}
		}
	}
	checkFiles := func(when string) {
		t.Helper()
		n := 0
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || p == path {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			n++
			if strings.HasSuffix(p, ".eml") {
				check(when+" "+p, decodeMail(string(b)))
			}
			check(when+" "+p, string(b))
			return nil
		})
		if err != nil || n < 4 {
			t.Fatalf("walking %s: %v (%d files)", dir, err, n)
		}
	}
	checkFiles("while running:")
	for _, raw := range ib.all() {
		check("mail", decodeMail(raw))
	}
	check("metrics", scraped)
	// The record keeps the entry's hash, and mail says what it was.
	var sawAlert, sawReport bool
	for _, raw := range ib.all() {
		d := decodeMail(raw)
		sawAlert = sawAlert || strings.Contains(d, "a site on the IWF list")
		sawReport = sawReport || strings.Contains(d, "REPORTED AS MISTAKES") || strings.Contains(d, "reported as a mistake")
	}
	if !sawAlert || sawReport {
		t.Errorf("mail: alert naming the IWF list %v, a refused report mailed %v", sawAlert, sawReport)
	}
	stop()
	checkFiles("after stopping:")

	var exports strings.Builder
	for _, args := range [][]string{
		{"events", "--all", "--csv"}, {"events", "--all", "--json"}, {"events"}, {"events", "--mistakes"},
		{"events", "--mistakes", "--json"}, {"incidents", "--json"}, {"incidents", "--csv"}, {"incidents"},
	} {
		code, out, errs := runCLI(t, append(append(args, "--config", path), "--since", "1h")...)
		if code != 0 {
			t.Fatalf("%v: %d %s", args, code, errs)
		}
		check(fmt.Sprint(args), out+errs)
		exports.WriteString(out)
	}
	html := filepath.Join(t.TempDir(), "digest.html")
	code, out, errs := runCLI(t, "report", "preview", "--config", path, "--schedule", "daily", "--out", html)
	if code != 0 {
		t.Fatalf("report preview: %d %s", code, errs)
	}
	check("report preview", out+errs)
	if b, err := os.ReadFile(html); err != nil {
		t.Fatal(err)
	} else {
		check("report preview HTML", string(b))
	}
	if !strings.Contains(exports.String(), sha(name)) || !strings.Contains(exports.String(), sha(urlHost+urlPath)) {
		t.Errorf("the exports do not carry the matched entries' hashes:\n%s", exports.String())
	}
	if strings.Contains(exports.String(), "withheld") {
		t.Errorf("the refused mistake report was stored:\n%s", exports.String())
	}
}
