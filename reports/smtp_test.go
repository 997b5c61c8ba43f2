package reports

import (
	"io"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	smtp "github.com/emersion/go-smtp"
)

// testSMTP is a real SMTP server on loopback that records what it accepts.
// It can refuse messages (a temporary 451) or be slow.
type testSMTP struct {
	srv  *smtp.Server
	addr *net.TCPAddr

	mu       sync.Mutex
	msgs     []recvMsg
	failN    int             // refuse this many more messages
	down     bool            // refuse every message
	delay    time.Duration   // wait before accepting DATA
	onData   func(recvMsg)   // called after a message is recorded, before the reply
	badRcpt  map[string]bool // addresses RCPT TO refuses for good (550: no such user)
	received chan struct{}
}

type recvMsg struct {
	From string
	To   []string
	Raw  string
	ID   string
	Subj string
}

func newTestSMTP(t *testing.T) *testSMTP {
	t.Helper()
	ts := &testSMTP{received: make(chan struct{}, 1000)}
	be := smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &testSession{ts: ts}, nil })
	ts.srv = smtp.NewServer(be)
	ts.srv.Domain = "localhost"
	ts.srv.AllowInsecureAuth = true
	ts.srv.ReadTimeout = 10 * time.Second
	ts.srv.WriteTimeout = 10 * time.Second
	ts.srv.ErrorLog = silentLog{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.addr = ln.Addr().(*net.TCPAddr)
	go func() { _ = ts.srv.Serve(ln) }()
	t.Cleanup(func() { ts.srv.Close() })
	return ts
}

type silentLog struct{}

func (silentLog) Printf(string, ...any) {}
func (silentLog) Println(...any)        {}

func (ts *testSMTP) mailConfig(dir string) MailConfig {
	return MailConfig{Host: "127.0.0.1", Port: ts.addr.Port, From: "gatehouse@school.example", TLS: "none",
		Timeout: 3 * time.Second, Dir: dir, Backoff: 50 * time.Millisecond, FallbackAfter: 2}
}

func (ts *testSMTP) set(f func(*testSMTP)) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	f(ts)
}

func (ts *testSMTP) messages() []recvMsg {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]recvMsg(nil), ts.msgs...)
}

// wait waits until n messages were accepted, or fails the test.
func (ts *testSMTP) wait(t *testing.T, n int, within time.Duration) []recvMsg {
	t.Helper()
	deadline := time.After(within)
	for {
		if m := ts.messages(); len(m) >= n {
			return m
		}
		select {
		case <-ts.received:
		case <-deadline:
			t.Fatalf("got %d messages, want %d within %s", len(ts.messages()), n, within)
		}
	}
}

type testSession struct {
	ts   *testSMTP
	from string
	to   []string
}

func (s *testSession) Reset()        { s.from, s.to = "", nil }
func (s *testSession) Logout() error { return nil }
func (s *testSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}
func (s *testSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.ts.mu.Lock()
	bad := s.ts.badRcpt[to]
	s.ts.mu.Unlock()
	if bad {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	s.to = append(s.to, to)
	return nil
}

func (s *testSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ts := s.ts
	ts.mu.Lock()
	delay := ts.delay
	refuse := ts.down || ts.failN > 0
	if ts.failN > 0 {
		ts.failN--
	}
	ts.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay)
	}
	if refuse {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	}
	m := recvMsg{From: s.from, To: s.to, Raw: string(b)}
	if pm, err := mail.ReadMessage(strings.NewReader(m.Raw)); err == nil {
		m.ID = pm.Header.Get("Message-Id")
		m.Subj = pm.Header.Get("Subject")
	}
	ts.mu.Lock()
	ts.msgs = append(ts.msgs, m)
	on := ts.onData
	ts.mu.Unlock()
	if on != nil {
		on(m)
	}
	select {
	case ts.received <- struct{}{}:
	default:
	}
	return nil
}
