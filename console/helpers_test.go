package console

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-filter/gatehouse/reports"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// rig is a console on a loopback listener over a real database.
type rig struct {
	t     testing.TB
	rep   *reports.Store
	st    *Store
	srv   *Server
	http  *httptest.Server
	clock *clock
	allow []netip.Prefix
	full  bool            // full logging on (FullLog)
	w     *reports.Writer // the event writer (writer())
	mu    sync.Mutex
}

// start is Wednesday 10:00 in London (winter: UTC).
var start = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

func newRig(t *testing.T, tls bool) *rig {
	t.Helper()
	return newRigAt(t, filepath.Join(t.TempDir(), "gatehouse.db"), tls)
}

// newRigAt is a rig over the database at path.
func newRigAt(t testing.TB, path string, tls bool) *rig {
	t.Helper()
	rep, err := reports.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rep.Close() })
	st, err := NewStore(rep.DB())
	if err != nil {
		t.Fatal(err)
	}
	london, err := time.LoadLocation("Europe/London")
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, rep: rep, st: st, clock: &clock{t: start}, allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	r.srv, err = New(Options{Store: st, Incidents: rep, Cases: rep, School: "Test Primary", Location: london, TLS: tls,
		FullLog: func() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.full },
		Now:     r.clock.Now, Allow: func() []netip.Prefix { r.mu.Lock(); defer r.mu.Unlock(); return r.allow }})
	if err != nil {
		t.Fatal(err)
	}
	if tls {
		r.http = httptest.NewTLSServer(r.srv)
	} else {
		r.http = httptest.NewServer(r.srv)
	}
	t.Cleanup(r.http.Close)
	return r
}

// add creates an account; it returns the TOTP secret ("" for none).
func (r *rig) add(email, role, password string, totp bool) string {
	r.t.Helper()
	secret := ""
	if totp {
		var err error
		if secret, err = NewTOTPSecret(); err != nil {
			r.t.Fatal(err)
		}
	}
	if err := r.st.AddAccount("cli:test", "cli", email, role, password, secret, r.clock.Now()); err != nil {
		r.t.Fatal(err)
	}
	return secret
}

// client is a browser-like client with its own cookie jar.
func (r *rig) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	c := r.http.Client()
	return &http.Client{Transport: c.Transport, Jar: jar}
}

type page struct {
	status int
	url    string
	body   string
	header http.Header
}

func (r *rig) do(c *http.Client, req *http.Request) page {
	r.t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return page{resp.StatusCode, resp.Request.URL.Path, string(b), resp.Header}
}

func (r *rig) get(c *http.Client, path string) page {
	r.t.Helper()
	req, _ := http.NewRequest("GET", r.http.URL+path, nil)
	return r.do(c, req)
}

func (r *rig) post(c *http.Client, path string, form url.Values, hdr ...string) page {
	r.t.Helper()
	req, _ := http.NewRequest("POST", r.http.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return r.do(c, req)
}

// csrf finds the form token in a page.
func csrf(t testing.TB, body string) string {
	t.Helper()
	_, rest, ok := strings.Cut(body, `name="csrf" value="`)
	if !ok {
		t.Fatalf("no csrf token in page:\n%s", body)
	}
	tok, _, _ := strings.Cut(rest, `"`)
	return tok
}

// signIn signs in with a password and (when secret is set) the current
// code, and returns the home page.
func (r *rig) signIn(c *http.Client, email, password, secret string) page {
	r.t.Helper()
	p := r.post(c, "/signin", url.Values{"email": {email}, "password": {password}})
	if secret == "" {
		return p
	}
	if p.url != "/signin/code" {
		r.t.Fatalf("after password: at %s (%d), want /signin/code:\n%s", p.url, p.status, p.body)
	}
	code, err := TOTPCode(secret, r.clock.Now())
	if err != nil {
		r.t.Fatal(err)
	}
	return r.post(c, "/signin/code", url.Values{"code": {code}, "csrf": {csrf(r.t, p.body)}})
}

// actions lists the audit log's actions in order.
func (r *rig) actions() []string {
	r.t.Helper()
	log, err := r.st.AuditLog()
	if err != nil {
		r.t.Fatal(err)
	}
	var out []string
	for _, e := range log {
		out = append(out, e.Action+" "+e.Target)
	}
	return out
}

const goodPass = "copper kettle violin harbour"

func newPost(u string, form url.Values) (*http.Request, error) {
	req, err := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	if err == nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	return req, err
}
