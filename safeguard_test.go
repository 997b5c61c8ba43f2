package main

import (
	"io"
	"mime"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	smtp "github.com/emersion/go-smtp"
	mdns "github.com/miekg/dns"
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
