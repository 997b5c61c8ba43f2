package reports

import (
	"bytes"
	"encoding/base64"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
)

// clock is a settable time source for tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func testLog(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// testWriter opens a store and a writer on it, closed when the test ends
// (Log: testLog, unless opt has one).
func testWriter(t *testing.T, opt Options) (*Store, *Writer) {
	t.Helper()
	st := openTemp(t)
	if opt.Log == nil {
		opt.Log = testLog(t)
	}
	w, err := NewWriter(st, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return st, w
}

func openTemp(t *testing.T) *Store {
	t.Helper()
	st, err := Open(filepath.Join(t.TempDir(), "gatehouse.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// ev builds a blocked DNS event.
func ev(at time.Time, client, group, cat, name string) Event {
	if cat == "" {
		return Event{Time: at, Source: "dns", Protocol: "udp", Client: netip.MustParseAddr(client), Group: group, Name: name,
			QType: "A", Action: "allow", Count: 1}
	}
	c, _ := bl.ParseCategory(cat)
	info := c.Info()
	return Event{Time: at, Source: "dns", Protocol: "udp", Client: netip.MustParseAddr(client), Group: group, Name: name,
		QType: "A", Action: "block", Reason: "category", Category: cat, Severity: info.Severity, Route: info.Route,
		Restricted: c.Restricted(), Bypass: c.Bypass(), Count: 1}
}

func count(t testing.TB, st *Store, q string, args ...any) int64 {
	var n int64
	if err := st.db.QueryRow(q, args...).Scan(&n); err != nil {
		if t == nil {
			panic(err)
		}
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// decoded returns a mail's decoded subject and the decoded text of every
// part, so that tests see what a reader sees (not quoted-printable or
// base64).
func decoded(t *testing.T, raw string) string {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(raw))
	if err != nil {
		t.Fatalf("reading message: %v", err)
	}
	dec := new(mime.WordDecoder)
	subj, _ := dec.DecodeHeader(m.Header.Get("Subject"))
	var out strings.Builder
	out.WriteString(subj + "\n")
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

func readEMLs(t *testing.T, dir string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(bytes.TrimSpace(b)))
	}
	return out
}

// mailFailing reports whether m says mail is failing (as /healthz and the
// gatehouse_reports_mail_failing metric do).
func mailFailing(m *Mailer) bool {
	_, err := m.Healthy()
	return err != nil
}
