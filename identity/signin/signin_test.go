package signin

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse-filter/gatehouse/identity"
	"github.com/gatehouse-filter/gatehouse/internal/oidctest"
	"github.com/gatehouse-filter/gatehouse/reports"
)

const (
	testClient = "gatehouse-signin"
	testSecret = "signin-secret-from-file"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// rig is a sign-in page on loopback with an OpenID provider in the test
// process, an identity table and a reports database.
type rig struct {
	t     *testing.T
	p     *oidctest.Provider
	s     *Service
	table *identity.Table
	st    *reports.Store
	clock *clock
	url   string // the page, http://127.0.0.1:PORT
	allow []netip.Prefix
	mu    sync.Mutex
}

func newRig(t *testing.T, opt func(*Options)) *rig {
	t.Helper()
	r := &rig{t: t, clock: &clock{t: time.Now()}, allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/26")}}
	r.p = oidctest.New(t, testClient, testSecret)
	r.p.Now = r.clock.now
	st, err := reports.Open(filepath.Join(t.TempDir(), "gatehouse.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r.st = st
	r.table = identity.New(identity.Options{Now: r.clock.now, Rules: []identity.Rule{{Match: "*@students.school.example", Group: "students"}}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.url = "http://" + ln.Addr().String()
	o := Options{Table: r.table, Issuer: r.p.URL, ClientID: testClient, ClientSecret: testSecret, RedirectURL: r.url + "/callback",
		Domains: []string{"school.example", "students.school.example"}, TTL: time.Hour, School: "Hillside Academy", Label: "Microsoft",
		Groups:  []ClaimGroup{{Claim: "groups", Value: "g-sixth-form", Group: "sixthform"}},
		Allowed: func(a netip.Addr) bool { r.mu.Lock(); defer r.mu.Unlock(); return prefixesContain(r.allow, a) },
		Store:   &Store{DB: st.DB()}, Client: r.p.Client(), Now: r.clock.now, Registry: prometheus.NewRegistry(),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if opt != nil {
		opt(&o)
	}
	r.s, err = New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: r.s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return r
}

func prefixesContain(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// browser is an HTTP client with a cookie jar whose connections come from
// the loopback address from (the TCP peer the page sees), trusting the
// provider's certificate.
func (r *rig) browser(from string) *http.Client {
	jar, _ := cookiejar.New(nil)
	tr := r.p.Client().Transport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}).DialContext
	tr.DisableKeepAlives = true
	return &http.Client{Jar: jar, Transport: tr, Timeout: 20 * time.Second}
}

type page struct {
	status int
	body   string
	path   string
}

func do(t *testing.T, c *http.Client, method, u string, form url.Values) page {
	t.Helper()
	var resp *http.Response
	var err error
	if method == "POST" {
		resp, err = c.PostForm(u, form)
	} else {
		resp, err = c.Get(u)
	}
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return page{resp.StatusCode, string(b), resp.Request.URL.Path}
}

// signIn presses the button and follows the provider's redirects back.
func (r *rig) signIn(c *http.Client) page {
	r.t.Helper()
	home := do(r.t, c, "GET", r.url+"/", nil)
	if !strings.Contains(home.body, "Sign in with Microsoft") {
		r.t.Fatalf("no button:\n%s", home.body)
	}
	return do(r.t, c, "POST", r.url+"/start", url.Values{})
}

func (r *rig) who(addr string) *identity.Entry {
	return r.table.Lookup(netip.MustParseAddr(addr), r.clock.now().UnixNano())
}

func (r *rig) result(name string) float64 {
	return testutil.ToFloat64(r.s.results.WithLabelValues(name))
}

var tokenRE = regexp.MustCompile(`name="token" value="([0-9a-f]+)"`)

// TestSignInAndOut: a pupil signs in from 127.0.0.21; the address is theirs
// in the identity table (source signin, group from identity.groups, the
// token's name); a teacher at 127.0.0.22 gets their group from a claim;
// sign-out removes the mapping, and a sign-out form from elsewhere does
// not.
func TestSignInAndOut(t *testing.T) {
	r := newRig(t, nil)
	r.p.Set(oidctest.Claims{Email: "Amira.Khan@Students.School.Example", Name: "Amira Khan"})
	amira := r.browser("127.0.0.21")
	pg := r.signIn(amira)
	if pg.status != 200 || pg.path != "/callback" || !strings.Contains(pg.body, "You are signed in") ||
		!strings.Contains(pg.body, "Amira Khan (amira.khan@students.school.example)") {
		t.Fatalf("after sign-in: %d %s\n%s", pg.status, pg.path, pg.body)
	}
	e := r.who("127.0.0.21")
	if e == nil || e.User != "amira.khan@students.school.example" || e.Display != "Amira Khan" || e.Group != "students" ||
		e.Source != identity.SourceSignin || e.Source.String() != "signin" {
		t.Fatalf("table: %+v", e)
	}
	if e.Until != r.clock.now().Add(time.Hour).UnixNano() {
		t.Errorf("until %v, want the TTL from now", time.Unix(0, e.Until))
	}
	if r.who("127.0.0.1") != nil || r.who("127.0.0.22") != nil {
		t.Fatal("another address was mapped")
	}
	// The page knows her when she comes back.
	home := do(t, amira, "GET", r.url+"/", nil)
	m := tokenRE.FindStringSubmatch(home.body)
	if !strings.Contains(home.body, "This device is signed in") || m == nil {
		t.Fatalf("home after sign-in:\n%s", home.body)
	}

	r.p.Set(oidctest.Claims{Email: "j.smith@school.example", Name: "John Smith", Extra: map[string]any{"groups": []string{"g-staff", "g-sixth-form"}}})
	teacher := r.browser("127.0.0.22")
	if pg := r.signIn(teacher); pg.status != 200 {
		t.Fatalf("teacher: %d\n%s", pg.status, pg.body)
	}
	if e := r.who("127.0.0.22"); e == nil || e.User != "j.smith@school.example" || e.Group != "sixthform" {
		t.Fatalf("claim group: %+v", e)
	}

	// A sign-out with another address's token (another site's form, or a
	// page from before) does nothing.
	other := do(t, teacher, "GET", r.url+"/", nil)
	tm := tokenRE.FindStringSubmatch(other.body)
	if pg := do(t, amira, "POST", r.url+"/signout", url.Values{"token": {tm[1]}}); pg.status != 400 {
		t.Fatalf("sign-out with another's token: %d", pg.status)
	}
	if r.who("127.0.0.21") == nil || r.who("127.0.0.22") == nil {
		t.Fatal("a bad sign-out removed a mapping")
	}
	if pg := do(t, amira, "POST", r.url+"/signout", url.Values{"token": {m[1]}}); pg.status != 200 || !strings.Contains(pg.body, "You are signed out") {
		t.Fatalf("sign-out: %d\n%s", pg.status, pg.body)
	}
	if e := r.who("127.0.0.21"); e != nil {
		t.Fatalf("after sign-out: %+v", e)
	}
	if r.who("127.0.0.22") == nil {
		t.Fatal("sign-out removed another address")
	}
	var n int
	r.st.DB().QueryRow(`SELECT count(*) FROM signins WHERE addr = '127.0.0.21'`).Scan(&n)
	if n != 0 {
		t.Fatal("the sign-out left the row in the database")
	}
	if r.result("signed-in") != 2 || r.result("signed-out") != 1 {
		t.Errorf("counts: signed-in %v signed-out %v", r.result("signed-in"), r.result("signed-out"))
	}
}

// TestSecondPersonReplaces: a second person signing in from the same
// address replaces the first, counted as replaced.
func TestSecondPersonReplaces(t *testing.T) {
	r := newRig(t, nil)
	r.p.Set(oidctest.Claims{Email: "amira@students.school.example"})
	r.signIn(r.browser("127.0.0.23"))
	r.p.Set(oidctest.Claims{Email: "ben@students.school.example"})
	ben := r.browser("127.0.0.23")
	if pg := r.signIn(ben); pg.status != 200 || !strings.Contains(pg.body, "ben@students.school.example") {
		t.Fatalf("second person: %d\n%s", pg.status, pg.body)
	}
	if e := r.who("127.0.0.23"); e == nil || e.User != "ben@students.school.example" {
		t.Fatalf("table: %+v", e)
	}
	if r.result("replaced") != 1 || r.s.Len() != 1 {
		t.Fatalf("replaced %v, sign-ins %d", r.result("replaced"), r.s.Len())
	}
	var users []string
	rows, _ := r.st.DB().Query(`SELECT user FROM signins`)
	for rows.Next() {
		var u string
		rows.Scan(&u)
		users = append(users, u)
	}
	rows.Close()
	if len(users) != 1 || users[0] != "ben@students.school.example" {
		t.Fatalf("kept: %v", users)
	}
}

// TestSignInRefused: everything that must not name an address.
func TestSignInRefused(t *testing.T) {
	r := newRig(t, nil)
	f := false
	cases := []struct {
		name   string
		claims oidctest.Claims
		status int
		result string
	}{
		{"wrong domain", oidctest.Claims{Email: "someone@gmail.com"}, 403, "refused-domain"},
		{"look-alike domain", oidctest.Claims{Email: "x@evilschool.example"}, 403, "refused-domain"},
		{"email not verified", oidctest.Claims{Email: "x@school.example", EmailVerified: &f}, 403, "refused-token"},
		{"nonce mismatch", oidctest.Claims{Email: "x@school.example", Nonce: "replayed-nonce"}, 401, "refused-token"},
		{"bad signature", oidctest.Claims{Email: "x@school.example", BadSignature: true}, 401, "refused-token"},
		{"another app's token", oidctest.Claims{Email: "x@school.example", Audience: "another-app"}, 401, "refused-token"},
		{"expired token", oidctest.Claims{Email: "x@school.example", Expired: true}, 401, "refused-token"},
		{"no email", oidctest.Claims{}, 403, "refused-token"},
		{"control character", oidctest.Claims{Email: "x\x00y@school.example"}, 403, "refused-token"},
		{"wildcard", oidctest.Claims{Email: "*@school.example"}, 403, "refused-token"},
	}
	for i, c := range cases {
		from := netip.AddrFrom4([4]byte{127, 0, 0, byte(30 + i)}).String()
		r.p.Set(c.claims)
		pg := r.signIn(r.browser(from))
		if pg.status != c.status || !strings.Contains(pg.body, "You are not signed in") {
			t.Errorf("%s: %d\n%s", c.name, pg.status, pg.body)
		}
		if e := r.who(from); e != nil {
			t.Errorf("%s: mapped %+v", c.name, e)
		}
		if got := r.result(c.result); got < 1 {
			t.Errorf("%s: not counted as %s", c.name, c.result)
		}
	}

	// A made-up or replayed state, and a callback finished in another
	// browser (no cookie), name nobody.
	r.p.Set(oidctest.Claims{Email: "x@school.example"})
	c := r.browser("127.0.0.40")
	if pg := do(t, c, "GET", r.url+"/callback?state=made-up&code=x", nil); pg.status != 400 {
		t.Errorf("made-up state: %d", pg.status)
	}
	// Stop at the provider's redirect back, and finish the sign-in in
	// another browser at the same address.
	noFollow := r.browser("127.0.0.40")
	noFollow.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Path == "/callback" {
			return http.ErrUseLastResponse
		}
		return nil
	}
	resp, err := noFollow.PostForm(r.url+"/start", url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	back := resp.Header.Get("Location")
	if !strings.Contains(back, "/callback?") {
		t.Fatalf("no redirect back: %d %q", resp.StatusCode, back)
	}
	if pg := do(t, r.browser("127.0.0.40"), "GET", back, nil); pg.status != 400 {
		t.Errorf("callback in another browser: %d", pg.status)
	}
	// The state was used up: the right browser cannot replay it either.
	if pg := do(t, noFollow, "GET", back, nil); pg.status != 400 {
		t.Errorf("replayed state: %d", pg.status)
	}
	// A browser that started at one address cannot finish at another.
	resp, err = noFollow.PostForm(r.url+"/start", url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	moved := r.browser("127.0.0.41")
	moved.Jar = noFollow.Jar
	if pg := do(t, moved, "GET", resp.Header.Get("Location"), nil); pg.status != 400 || !strings.Contains(pg.body, "address changed") {
		t.Errorf("finished at another address: %d\n%s", pg.status, pg.body)
	}
	if r.who("127.0.0.40") != nil || r.who("127.0.0.41") != nil {
		t.Fatal("a refused callback named an address")
	}
}

// TestGoogleHostedDomain: with HostedDomain (Google's issuer), a school
// address from a consumer Google account (no "hd" claim, or another
// domain's) is refused; the school's Workspace account is taken.
func TestGoogleHostedDomain(t *testing.T) {
	r := newRig(t, func(o *Options) { o.HostedDomain = true })
	r.p.Set(oidctest.Claims{Email: "amira@school.example"})
	if pg := r.signIn(r.browser("127.0.0.42")); pg.status != 403 || r.who("127.0.0.42") != nil {
		t.Fatalf("consumer account: %d", pg.status)
	}
	r.p.Set(oidctest.Claims{Email: "amira@school.example", Extra: map[string]any{"hd": "other.example"}})
	if pg := r.signIn(r.browser("127.0.0.43")); pg.status != 403 || r.who("127.0.0.43") != nil {
		t.Fatalf("another domain's hd: %d", pg.status)
	}
	r.p.Set(oidctest.Claims{Email: "amira@school.example", Extra: map[string]any{"hd": "school.example"}})
	if pg := r.signIn(r.browser("127.0.0.44")); pg.status != 200 || r.who("127.0.0.44") == nil {
		t.Fatalf("workspace account: %d\n%s", pg.status, pg.body)
	}
}

// TestForgedForwardedFor: the address is the TCP peer's; a client's
// X-Forwarded-For, X-Real-IP or Forwarded header names nobody.
func TestForgedForwardedFor(t *testing.T) {
	r := newRig(t, nil)
	r.p.Set(oidctest.Claims{Email: "mallory@students.school.example"})
	c := r.browser("127.0.0.24")
	base := c.Transport
	c.Transport = roundTripper(func(req *http.Request) (*http.Response, error) {
		req = req.Clone(req.Context())
		req.Header.Set("X-Forwarded-For", "127.0.0.25")
		req.Header.Set("X-Real-IP", "127.0.0.25")
		req.Header.Set("Forwarded", "for=127.0.0.25")
		return base.RoundTrip(req)
	})
	if pg := r.signIn(c); pg.status != 200 {
		t.Fatalf("sign-in: %d\n%s", pg.status, pg.body)
	}
	if e := r.who("127.0.0.25"); e != nil {
		t.Fatalf("the forged address was mapped: %+v", e)
	}
	if e := r.who("127.0.0.24"); e == nil || e.User != "mallory@students.school.example" {
		t.Fatalf("the peer was not mapped: %+v", e)
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestOutsideAllowList: an address outside the allow list gets 403 on
// every path and is never mapped.
func TestOutsideAllowList(t *testing.T) {
	r := newRig(t, nil)
	r.p.Set(oidctest.Claims{Email: "x@school.example"})
	c := r.browser("127.0.0.100") // outside 127.0.0.0/26
	for _, p := range []struct{ method, path string }{{"GET", "/"}, {"POST", "/start"}, {"GET", "/callback?state=x"}, {"POST", "/signout"}} {
		if pg := do(t, c, p.method, r.url+p.path, url.Values{}); pg.status != 403 || strings.Contains(pg.body, "Sign in") {
			t.Errorf("%s %s: %d", p.method, p.path, pg.status)
		}
	}
	if r.p.Tokens() != 0 || r.who("127.0.0.100") != nil {
		t.Fatal("a client outside the allow list signed in")
	}
	if r.result("refused-address") != 4 {
		t.Errorf("refused-address %v", r.result("refused-address"))
	}
}

// TestExpiryAndRestart: a sign-in lasts the TTL; it is kept in the
// database and put back in a new table after a restart; ended sign-ins
// are deleted, never loaded.
func TestExpiryAndRestart(t *testing.T) {
	r := newRig(t, nil)
	r.p.Set(oidctest.Claims{Email: "amira@students.school.example", Name: "Amira Khan"})
	r.signIn(r.browser("127.0.0.26"))
	r.clock.add(30 * time.Minute)
	r.p.Set(oidctest.Claims{Email: "ben@students.school.example"})
	if pg := r.signIn(r.browser("127.0.0.27")); pg.status != 200 {
		t.Fatalf("Ben's sign-in: %d\n%s", pg.status, pg.body)
	}

	// A restart 10 minutes later: a new table and service on the same
	// database.
	r.clock.add(10 * time.Minute)
	t2 := identity.New(identity.Options{Now: r.clock.now})
	s2, err := New(Options{Table: t2, Issuer: r.p.URL, ClientID: testClient, RedirectURL: r.url + "/callback", Domains: []string{"school.example"},
		TTL: time.Hour, Store: &Store{DB: r.st.DB()}, Now: r.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s2.Restore(context.Background()); err != nil || n != 2 {
		t.Fatalf("restored %d, %v", n, err)
	}
	now := r.clock.now().UnixNano()
	if e := t2.Lookup(netip.MustParseAddr("127.0.0.26"), now); e == nil || e.User != "amira@students.school.example" || e.Display != "Amira Khan" ||
		e.Source != identity.SourceSignin {
		t.Fatalf("after the restart: %+v", e)
	}
	// Amira's hour ends (20 minutes on): the table ignores it at once,
	// the sweep removes it from the page and the database, and a later
	// restart does not bring it back.
	r.clock.add(20*time.Minute + time.Second)
	if e := t2.Lookup(netip.MustParseAddr("127.0.0.26"), r.clock.now().UnixNano()); e != nil {
		t.Fatalf("an ended sign-in names the address: %+v", e)
	}
	if e := t2.Lookup(netip.MustParseAddr("127.0.0.27"), r.clock.now().UnixNano()); e == nil {
		t.Fatal("Ben's sign-in ended early")
	}
	s2.sweep(context.Background())
	if s2.Len() != 1 {
		t.Fatalf("sign-ins after the sweep: %d", s2.Len())
	}
	var n int
	r.st.DB().QueryRow(`SELECT count(*) FROM signins WHERE addr = '127.0.0.26'`).Scan(&n)
	if n != 0 {
		t.Fatal("the ended sign-in is still in the database")
	}
	// Ben's ends too; a restart loads nothing and deletes his row.
	r.clock.add(time.Hour)
	s3, _ := New(Options{Table: identity.New(identity.Options{Now: r.clock.now}), Issuer: r.p.URL, ClientID: testClient, RedirectURL: r.url + "/callback",
		Domains: []string{"school.example"}, TTL: time.Hour, Store: &Store{DB: r.st.DB()}, Now: r.clock.now})
	if n, err := s3.Restore(context.Background()); err != nil || n != 0 {
		t.Fatalf("restored %d ended sign-ins, %v", n, err)
	}
	r.st.DB().QueryRow(`SELECT count(*) FROM signins`).Scan(&n)
	if n != 0 {
		t.Fatalf("%d ended sign-ins kept", n)
	}
}

// TestRateLimit: more than RateLimit sign-in steps a minute from one
// address get 429; another address is not affected; the next minute is.
func TestRateLimit(t *testing.T) {
	r := newRig(t, nil)
	c := r.browser("127.0.0.28")
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for i := range RateLimit {
		if pg := do(t, c, "POST", r.url+"/start", url.Values{}); pg.status != http.StatusSeeOther {
			t.Fatalf("start %d: %d", i, pg.status)
		}
	}
	if pg := do(t, c, "POST", r.url+"/start", url.Values{}); pg.status != http.StatusTooManyRequests || !strings.Contains(pg.body, "wait a minute") {
		t.Fatalf("over the limit: %d", pg.status)
	}
	d := r.browser("127.0.0.29")
	d.CheckRedirect = c.CheckRedirect
	if pg := do(t, d, "POST", r.url+"/start", url.Values{}); pg.status != http.StatusSeeOther {
		t.Fatalf("another address: %d", pg.status)
	}
	r.clock.add(time.Minute)
	if pg := do(t, c, "POST", r.url+"/start", url.Values{}); pg.status != http.StatusSeeOther {
		t.Fatalf("the next minute: %d", pg.status)
	}
}

// TestPendingBound: at most MaxPending sign-ins wait; the oldest goes.
func TestPendingBound(t *testing.T) {
	r := newRig(t, nil)
	if _, _, err := r.s.discover(context.Background()); err != nil {
		t.Fatal(err)
	}
	now := r.clock.now()
	r.s.mu.Lock()
	for i := range MaxPending {
		k := string(rune(i)) + "x"
		r.s.pending[k] = pending{started: now.Add(time.Duration(i) * time.Millisecond)}
		r.s.order = append(r.s.order, k)
	}
	r.s.mu.Unlock()
	r.clock.add(time.Second)
	c := r.browser("127.0.0.30")
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	do(t, c, "POST", r.url+"/start", url.Values{})
	r.s.mu.Lock()
	n := len(r.s.pending)
	_, first := r.s.pending[string(rune(0))+"x"]
	r.s.mu.Unlock()
	if n != MaxPending || first {
		t.Fatalf("pending %d, oldest kept %t", n, first)
	}
}

// TestCertReload: the page's certificate is loaded again after a renewal.
func TestCertReload(t *testing.T) {
	dir := t.TempDir()
	writePair(t, dir, "one.example")
	c := &Cert{CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem")}
	if err := c.Load(); err != nil {
		t.Fatal(err)
	}
	first, _ := c.GetCertificate(&tls.ClientHelloInfo{})
	time.Sleep(10 * time.Millisecond) // a later modification time
	writePair(t, dir, "two.example")
	c.mu.Lock()
	c.checked = time.Time{} // as if a minute had passed
	c.mu.Unlock()
	second, _ := c.GetCertificate(&tls.ClientHelloInfo{})
	if first == second || second.Leaf == nil || second.Leaf.DNSNames[0] != "two.example" {
		t.Fatalf("not reloaded: %v", second.Leaf.DNSNames)
	}
}

// TestHeaders: the page is never cached, framed or referred from, and
// over HTTPS tells the browser to stay on HTTPS.
func TestHeaders(t *testing.T) {
	for _, secure := range []bool{false, true} {
		r := newRig(t, func(o *Options) { o.Secure = secure })
		resp, err := r.browser("127.0.0.45").Get(r.url + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		h := resp.Header
		if h.Get("Cache-Control") != "no-store" || h.Get("Referrer-Policy") != "no-referrer" || h.Get("X-Frame-Options") != "DENY" ||
			!strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") ||
			!strings.Contains(h.Get("Content-Security-Policy"), "form-action 'self' "+r.p.URL) {
			t.Errorf("secure %t: headers %v", secure, h)
		}
		if (h.Get("Strict-Transport-Security") != "") != secure {
			t.Errorf("secure %t: HSTS %q", secure, h.Get("Strict-Transport-Security"))
		}
	}
}

// TestProviderKeysCached: the provider's signing keys are fetched once for
// many sign-ins (a verifier made per sign-in fetched them every time: one
// more request to the provider for each pupil of a morning rush, and a
// refused sign-in whenever it was slow).
func TestProviderKeysCached(t *testing.T) {
	r := newRig(t, nil)
	for i, addr := range []string{"127.0.0.31", "127.0.0.32", "127.0.0.33"} {
		r.p.Set(oidctest.Claims{Email: fmt.Sprintf("pupil%d@students.school.example", i), Name: fmt.Sprintf("Pupil %d", i)})
		if pg := r.signIn(r.browser(addr)); pg.status != 200 {
			t.Fatalf("sign-in %d: %d\n%s", i, pg.status, pg.body)
		}
	}
	if n := r.p.KeyFetches(); n != 1 {
		t.Fatalf("the provider's keys were fetched %d times for 3 sign-ins, want 1", n)
	}
}

// TestSignOutKeptWhenBrowserGoes: a sign-out whose request is cancelled
// (the browser closed as the answer came) is still written to the
// database, so the pupil is not signed in again after a restart.
func TestSignOutKeptWhenBrowserGoes(t *testing.T) {
	r := newRig(t, nil)
	r.p.Set(oidctest.Claims{Email: "amira.khan@students.school.example", Name: "Amira Khan"})
	if pg := r.signIn(r.browser("127.0.0.35")); pg.status != 200 {
		t.Fatalf("sign-in: %d", pg.status)
	}
	addr := netip.MustParseAddr("127.0.0.35")
	rec, ok := r.s.current(addr, r.clock.now())
	if !ok {
		t.Fatal("not signed in")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r.s.Remove(ctx, addr, rec.Session)
	kept, err := (&Store{DB: r.st.DB()}).Load(context.Background(), r.clock.now())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range kept {
		if k.Addr == addr {
			t.Fatalf("the sign-out was not written: %+v is restored after a restart", k)
		}
	}
}

// TestRestartWithChangedSettings: sign-ins kept in the database come back
// after a restart with the same settings; after one with changed settings
// (here a claim mapping IT corrected) they are dropped, so nobody keeps a
// group the old rules gave them until their sign-in ends.
func TestRestartWithChangedSettings(t *testing.T) {
	r := newRig(t, nil)
	if _, err := r.s.Restore(context.Background()); err != nil { // serve's start: records the settings
		t.Fatal(err)
	}
	r.p.Set(oidctest.Claims{Email: "j.smith@school.example", Name: "John Smith", Extra: map[string]any{"groups": []string{"g-sixth-form"}}})
	if pg := r.signIn(r.browser("127.0.0.36")); pg.status != 200 {
		t.Fatalf("sign-in: %d", pg.status)
	}
	restart := func(edit func(*Options)) (*identity.Table, int) {
		t.Helper()
		o := r.s.o
		o.Table = identity.New(identity.Options{Now: r.clock.now})
		o.Registry = nil
		if edit != nil {
			edit(&o)
		}
		s, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		n, err := s.Restore(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return o.Table, n
	}
	addr := netip.MustParseAddr("127.0.0.36")
	if tb, n := restart(nil); n != 1 || tb.Lookup(addr, r.clock.now().UnixNano()).Group != "sixthform" {
		t.Fatalf("same settings: %d restored", n)
	}
	tb, n := restart(func(o *Options) {
		o.Groups = []ClaimGroup{{Claim: "groups", Value: "g-sixth-form-2026", Group: "sixthform"}}
	})
	if n != 0 || tb.Lookup(addr, r.clock.now().UnixNano()) != nil {
		t.Fatalf("changed claim mapping: %d restored", n)
	}
	var rows int
	r.st.DB().QueryRow(`SELECT count(*) FROM signins`).Scan(&rows)
	if rows != 0 {
		t.Fatalf("%d sign-ins still kept", rows)
	}
}

// TestRateCountsFullStaysOpen: with MaxLimited addresses counted within
// the minute (one device churning IPv6 privacy addresses), a new address
// is still let in: one count is forgotten for it, the map stays bounded.
func TestRateCountsFullStaysOpen(t *testing.T) {
	r := newRig(t, nil)
	now := r.clock.now()
	base := netip.MustParseAddr("2001:db8::").As16()
	for i := range MaxLimited {
		a := base
		a[12], a[13], a[14], a[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		r.s.allow(netip.AddrFrom16(a), now)
	}
	if !r.s.allow(netip.MustParseAddr("127.0.0.37"), now) {
		t.Fatal("a new address was refused because the rate counts were full")
	}
	if n := r.s.limited.Len(); n > MaxLimited {
		t.Fatalf("%d addresses counted, bound %d", n, MaxLimited)
	}
}

// TestPendingOrderBounded: the oldest-first list of pending sign-ins never
// grows past twice the bound, even when sign-ins finished behind one that
// is still under way (they leave the map at once, the list lazily).
func TestPendingOrderBounded(t *testing.T) {
	r := newRig(t, nil)
	if _, _, err := r.s.discover(context.Background()); err != nil {
		t.Fatal(err)
	}
	now := r.clock.now()
	r.s.mu.Lock()
	r.s.pending["live"] = pending{started: now}
	r.s.order = append(r.s.order, "live")
	for i := range 2 * MaxPending {
		r.s.order = append(r.s.order, fmt.Sprintf("used-%d", i)) // finished: gone from the map
	}
	r.s.mu.Unlock()
	c := r.browser("127.0.0.38")
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	do(t, c, "POST", r.url+"/start", url.Values{})
	r.s.mu.Lock()
	n, p := len(r.s.order), len(r.s.pending)
	r.s.mu.Unlock()
	if n != p || p != 2 {
		t.Fatalf("order %d for %d pending, want both 2", n, p)
	}
}

// TestSignOutFormBounded: the sign-out form is one token; a body padded
// past 4 KiB is not read (net/http would read up to 10 MB of it) and
// signs nobody out, and the plain form still does.
func TestSignOutFormBounded(t *testing.T) {
	r := newRig(t, nil)
	r.p.Set(oidctest.Claims{Email: "Amira.Khan@Students.School.Example", Name: "Amira Khan"})
	amira := r.browser("127.0.0.21")
	if pg := r.signIn(amira); pg.status != 200 {
		t.Fatalf("sign-in: %d\n%s", pg.status, pg.body)
	}
	m := tokenRE.FindStringSubmatch(do(t, amira, "GET", r.url+"/", nil).body)
	if m == nil {
		t.Fatal("no sign-out form")
	}
	padded := url.Values{"pad": {strings.Repeat("a", 1<<20)}, "token": {m[1]}}
	if pg := do(t, amira, "POST", r.url+"/signout", padded); pg.status != 400 {
		t.Fatalf("a 1 MiB sign-out form: %d", pg.status)
	}
	if r.who("127.0.0.21") == nil {
		t.Fatal("a 1 MiB sign-out form signed out")
	}
	if pg := do(t, amira, "POST", r.url+"/signout", url.Values{"token": {m[1]}}); pg.status != 200 {
		t.Fatalf("sign-out: %d", pg.status)
	}
}

// TestSchoolDeviceSigninEnds: a sign-in made before its address was known
// to be a school device (its lease read after it, a reload listing it, a
// sign-in kept from before a restart) ends at the next sweep, so the
// device's own settings decide; a sign-in elsewhere stays. The page at a
// school device offers no sign-in and refuses one.
func TestSchoolDeviceSigninEnds(t *testing.T) {
	var mu sync.Mutex
	school := map[netip.Addr]string{}
	r := newRig(t, func(o *Options) {
		o.SchoolDevice = func(a netip.Addr) string { mu.Lock(); defer mu.Unlock(); return school[a] }
	})
	r.p.Set(oidctest.Claims{Email: "j.smith@school.example", Name: "John Smith"})
	for _, a := range []string{"127.0.0.31", "127.0.0.32"} {
		if pg := r.signIn(r.browser(a)); pg.status != 200 {
			t.Fatalf("%s: %d\n%s", a, pg.status, pg.body)
		}
	}
	mu.Lock()
	school[netip.MustParseAddr("127.0.0.31")] = "CLASS-PC-1"
	mu.Unlock()
	r.s.sweep(context.Background())
	if e := r.who("127.0.0.31"); e != nil && e.User != "" {
		t.Errorf("the sign-in at the school device stayed: %+v", e)
	}
	if e := r.who("127.0.0.32"); e == nil || e.User != "j.smith@school.example" {
		t.Errorf("the other sign-in ended: %+v", e)
	}
	if n := r.result("ended-device"); n != 1 {
		t.Errorf("ended-device %v", n)
	}
	c := r.browser("127.0.0.31")
	if home := do(t, c, "GET", r.url+"/", nil); strings.Contains(home.body, `action="/start"`) || !strings.Contains(home.body, "CLASS-PC-1") {
		t.Errorf("the page at a school device:\n%s", home.body)
	}
	if pg := do(t, c, "POST", r.url+"/start", url.Values{}); pg.status != http.StatusForbidden || r.result("refused-device") != 1 {
		t.Errorf("a sign-in at a school device: %d\n%s", pg.status, pg.body)
	}
}

// TestSignInNameInOneForm: a sign-in is recorded under the name in the
// one form every source's is (username.Canon), so "Jo.Straße@" from the
// provider is the "jo.strasse@" a Wi-Fi login or clients.users names.
func TestSignInNameInOneForm(t *testing.T) {
	r := newRig(t, nil)
	r.p.Set(oidctest.Claims{Email: "Jo.Straße@School.Example", Name: "Jo Straße"})
	if pg := r.signIn(r.browser("127.0.0.33")); pg.status != 200 {
		t.Fatalf("%d\n%s", pg.status, pg.body)
	}
	if e := r.who("127.0.0.33"); e == nil || e.User != "jo.strasse@school.example" {
		t.Fatalf("recorded as %+v", e)
	}
}

// TestEmailVerifiedPerProvider: an ID token's email names the pupil only
// when the provider vouches for it. A provider other than Microsoft Entra
// ID (Google, any OpenID provider) must say email_verified true: a token
// without the claim is refused (before, it was taken). Entra ID sends no
// email_verified: its accounts are the tenant's, so the token must carry
// the configured tenant's tid and be no guest's (an idp claim other than
// the issuer: a B2B guest or a personal Microsoft account invited into
// the tenant), and xms_edov, when sent, must not be false.
func TestEmailVerifiedPerProvider(t *testing.T) {
	const tenant = "0b1c2d3e-0000-4000-8000-000000000001"
	no := false
	for _, c := range []struct {
		name   string
		tenant string
		extra  map[string]any
		ev     *bool
		ok     bool
	}{
		{"generic without email_verified", "", map[string]any{"email_verified": nil}, nil, false},
		{"generic verified", "", nil, nil, true},
		{"generic unverified", "", nil, &no, false},
		{"entra member", tenant, map[string]any{"email_verified": nil, "tid": tenant}, nil, true},
		{"entra without tid", tenant, map[string]any{"email_verified": nil}, nil, false},
		{"entra other tenant", tenant, map[string]any{"email_verified": nil, "tid": "0b1c2d3e-0000-4000-8000-000000000002"}, nil, false},
		{"entra guest", tenant, map[string]any{"email_verified": nil, "tid": tenant, "idp": "https://sts.windows.net/0b1c2d3e-0000-4000-8000-000000000002/"}, nil, false},
		{"entra personal account", tenant, map[string]any{"email_verified": nil, "tid": tenant, "idp": "live.com"}, nil, false},
		{"entra unverified domain", tenant, map[string]any{"email_verified": nil, "tid": tenant, "xms_edov": false}, nil, false},
		{"entra unverified", tenant, map[string]any{"tid": tenant}, &no, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, func(o *Options) { o.Tenant = c.tenant })
			r.p.Set(oidctest.Claims{Email: "j.smith@school.example", Name: "John Smith", EmailVerified: c.ev, Extra: c.extra})
			pg := r.signIn(r.browser("127.0.0.34"))
			e := r.who("127.0.0.34")
			if got := pg.status == 200 && e != nil && e.User == "j.smith@school.example"; got != c.ok {
				t.Fatalf("signed in %t, want %t: %d %+v\n%s", got, c.ok, pg.status, e, pg.body)
			}
			if !c.ok && r.result("refused-token") != 1 {
				t.Errorf("refused-token %v", r.result("refused-token"))
			}
		})
	}
}
