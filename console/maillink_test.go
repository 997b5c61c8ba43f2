package console

import (
	"context"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	smtp "github.com/emersion/go-smtp"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// smtpSink is a real SMTP server (go-smtp) on loopback keeping what it
// accepts.
type smtpSink struct {
	mu   sync.Mutex
	msgs []string
	port int
}

func newSMTPSink(t *testing.T) *smtpSink {
	t.Helper()
	s := &smtpSink{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &sinkSession{s: s}, nil }))
	srv.Domain, srv.AllowInsecureAuth = "localhost", true
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.port = ln.Addr().(*net.TCPAddr).Port
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return s
}

type sinkSession struct{ s *smtpSink }

func (*sinkSession) Reset()                               {}
func (*sinkSession) Logout() error                        { return nil }
func (*sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (*sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, string(b))
	ss.s.mu.Unlock()
	return nil
}

func (s *smtpSink) messages() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.msgs...)
}

// readable is a mail's subject and decoded parts, as a reader sees them.
func readable(t *testing.T, raw string) string {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	out.WriteString(m.Header.Get("Subject") + "\n")
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
		if strings.EqualFold(get("Content-Transfer-Encoding"), "quoted-printable") {
			body = quotedprintable.NewReader(body)
		}
		b, _ := io.ReadAll(body)
		out.Write(b)
	}
	walk(m.Header, m.Body)
	return out.String()
}

// hidden finds a hidden form field's value.
func hidden(t testing.TB, body, name string) string {
	t.Helper()
	_, rest, ok := strings.Cut(body, `name="`+name+`" value="`)
	if !ok {
		t.Fatalf("no %s field in:\n%s", name, body)
	}
	v, _, _ := strings.Cut(rest, `"`)
	return strings.ReplaceAll(v, "&amp;", "&")
}

// signInVia signs in from a sign-in page reached by a redirect, keeping
// the page it came from.
func (r *rig) signInVia(c *http.Client, p page, email, secret string) page {
	r.t.Helper()
	form := url.Values{"email": {email}, "password": {goodPass}}
	if strings.Contains(p.body, `name="next"`) {
		form.Set("next", hidden(r.t, p.body, "next"))
	}
	p = r.post(c, "/signin", form)
	if p.url != "/signin/code" {
		r.t.Fatalf("after password: %s (%d)", p.url, p.status)
	}
	code, err := TOTPCode(secret, r.clock.Now())
	if err != nil {
		r.t.Fatal(err)
	}
	form = url.Values{"code": {code}, "csrf": {csrf(r.t, p.body)}}
	if strings.Contains(p.body, `name="next"`) {
		form.Set("next", hidden(r.t, p.body, "next"))
	}
	return r.post(c, "/signin/code", form)
}

// TestAlertMailLinksToIncident: an attempt recorded by the writer is
// alerted by mail over real SMTP; the mail carries the incident's
// reference and link; the link asks for sign-in and, after it, shows the
// incident.
func TestAlertMailLinksToIncident(t *testing.T) {
	r := newRig(t, false)
	sink := newSMTPSink(t)
	m := reports.NewMailer(r.rep, reports.MailConfig{Host: "127.0.0.1", Port: sink.port, From: "gatehouse@school.example", TLS: "none",
		Timeout: 5 * time.Second, Dir: t.TempDir()}, nil, r.clock.Now)
	a := reports.NewAlerter(r.rep, reports.Options{Now: r.clock.Now, ConsoleURL: r.http.URL + "/"}, reports.Roles{"dsl": {"dsl@school.example"}},
		"Test Primary", nil, m)
	record(t, r.writer(), block(r.clock.Now(), "10.0.0.5", "alice", "", "year9", "self-harm", "harm.example", "", "how to hurt myself"))
	id := r.incidentID("user:alice", "self-harm")
	if n, err := a.Check(context.Background()); err != nil || n != 1 {
		t.Fatalf("alerts queued: %d %v", n, err)
	}
	if _, err := m.DeliverDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	msgs := sink.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d mails delivered, want 1", len(msgs))
	}
	text := readable(t, msgs[0])
	link := regexp.MustCompile(`http://127\.0\.0\.1:\d+/incidents/\d+`).FindString(text)
	if want := r.http.URL + "/incidents/" + itoa(id); link != want || !strings.Contains(text, "Incident: #"+itoa(id)) {
		t.Fatalf("mail link %q, want %q:\n%s", link, want, text)
	}
	if !strings.Contains(text, `<a href="`+link+`">`) {
		t.Fatalf("the HTML part has no link:\n%s", text)
	}

	secret := r.add("dsl@school.example", RoleDSL, goodPass, true)
	c := r.client()
	p := r.get(c, strings.TrimPrefix(link, r.http.URL))
	if p.url != "/signin" || strings.Contains(p.body, "alice") {
		t.Fatalf("the link without sign-in: %d at %s\n%s", p.status, p.url, p.body)
	}
	p = r.signInVia(c, p, "dsl@school.example", secret)
	if p.status != 200 || p.url != "/incidents/"+itoa(id) || !strings.Contains(p.body, "how to hurt myself") {
		t.Fatalf("after sign-in: %d at %s\n%s", p.status, p.url, p.body)
	}
	if e := r.lastAudit(); e.Action != "view" || e.Target != "incident:"+itoa(id) {
		t.Fatalf("view not audited: %+v", e)
	}
}

// TestSignInNextStaysOnConsole: the page to go back to after sign-in is
// never another site.
func TestSignInNextStaysOnConsole(t *testing.T) {
	r := newRig(t, false)
	secret := r.add("dsl@school.example", RoleDSL, goodPass, true)
	for i, next := range []string{"//evil.example/x", "https://evil.example/", "/\\evil.example", "/signin/code", "javascript:alert(1)"} {
		r.clock.Add(time.Minute) // a fresh code each time
		c := r.client()
		p := r.get(c, "/signin?"+url.Values{"next": {next}}.Encode())
		form := url.Values{"email": {"dsl@school.example"}, "password": {goodPass}, "next": {next}}
		p = r.post(c, "/signin", form)
		code, _ := TOTPCode(secret, r.clock.Now())
		p = r.post(c, "/signin/code", url.Values{"code": {code}, "csrf": {csrf(t, p.body)}, "next": {next}})
		if p.status != 200 || p.url != "/" || p.header.Get("Location") != "" {
			t.Fatalf("%d: next %q led to %d at %s", i, next, p.status, p.url)
		}
	}
}
