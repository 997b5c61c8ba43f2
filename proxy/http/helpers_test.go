package httpproxy

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/identity"
	"github.com/gatehouse-filter/gatehouse/policy"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// mapResolver answers from a fixed table and counts lookups.
type mapResolver struct {
	mu      sync.Mutex
	names   map[string][]netip.Addr
	errs    map[string]error // answered with this error
	lookups map[string]int
}

func (m *mapResolver) LookupNetIP(_ context.Context, _ netip.Addr, host string) ([]netip.Addr, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lookups[host]++
	if err, ok := m.errs[host]; ok {
		return nil, err
	}
	if a, ok := m.names[host]; ok {
		return a, nil
	}
	return nil, errors.New("NXDOMAIN")
}

func (m *mapResolver) count(host string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lookups[host]
}

// sink collects events.
type sink struct {
	mu sync.Mutex
	ev []reports.Event
}

func (s *sink) Record(e reports.Event) bool {
	s.mu.Lock()
	s.ev = append(s.ev, e)
	s.mu.Unlock()
	return true
}

func (s *sink) events() []reports.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]reports.Event(nil), s.ev...)
}

// waitEvent waits for an event matching f.
func (s *sink) waitEvent(t testing.TB, f func(reports.Event) bool) reports.Event {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // returns as soon as it is there
	for time.Now().Before(deadline) {
		for _, e := range s.events() {
			if f(e) {
				return e
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no matching event; have %+v", s.events())
	return reports.Event{}
}

// env is a running proxy with loopback origins.
type env struct {
	t        testing.TB
	dir      string
	s        *Server
	addr     string // proxy host:port
	origin   *httptest.Server
	tlsOrig  *httptest.Server
	res      *mapResolver
	sink     *sink
	cfg      *config.Config // as parsed; the proxy reads cur
	cur      atomic.Pointer[config.Config]
	eng      atomic.Pointer[policy.Engine] // built from cur (editProxy rebuilds it)
	ix       *bl.Index
	originNC atomic.Int32 // new connections to the plain origin
	hits     atomic.Int32 // requests the origins served
	lastReq  atomic.Pointer[http.Request]
}

const password = "correct horse battery staple"

type envOpts struct {
	extra   string         // appended to the proxy: section
	allow   string         // clients.allow
	roots   *x509.CertPool // upstream roots
	tlsPort bool           // treat the plain origin's port as the TLS-checked port
	// resolver replaces the map-backed resolver (e.g. an UpstreamResolver
	// asking a loopback DNS server).
	resolver  Resolver
	idleTotal int          // proxy.limits.idle_total; 0 = 64
	sink      reports.Sink // instead of the collecting sink
	certs     CertSource   // the school's CA's leaves (decryption); nil = none
	perClient int          // proxy.limits.per_client; 0 = 10
	identity  *identity.Table
	directory DirectoryLogin // identity.ldap's logins
}

func newEnv(t testing.TB, eo envOpts) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), sink: &sink{}}
	mux := http.NewServeMux()
	small := strings.Repeat("x", 1024)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		e.hits.Add(1)
		e.lastReq.Store(r)
		_, _ = io.WriteString(w, small)
	})
	e.origin = httptest.NewUnstartedServer(mux)
	e.origin.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			e.originNC.Add(1)
		}
	}
	e.origin.Start()
	t.Cleanup(e.origin.Close)
	e.tlsOrig = httptest.NewTLSServer(mux)
	t.Cleanup(e.tlsOrig.Close)

	_, oport, _ := net.SplitHostPort(e.origin.Listener.Addr().String())
	_, tport, _ := net.SplitHostPort(e.tlsOrig.Listener.Addr().String())
	lo := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	e.res = &mapResolver{names: map[string][]netip.Addr{
		"site.test": lo, "games.test": lo, "example.com": lo, "adult.test": lo, "abuse.test": lo,
	}, errs: map[string]error{}, lookups: map[string]int{}}

	files := map[string]string{
		"adult.txt":   "adult.test\n",
		"games.txt":   "games.test\n",
		"gamble.txt":  "site.test/casino\n",
		"doh-ips.txt": "198.51.100.0/24\n2001:db8:d0::/48\n",
		"iwf.txt":     hashHex("abuse.test/dir/page.html") + "\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(e.dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "users"), []byte("# proxy users\njsmith:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	idleTotal := eo.idleTotal
	if idleTotal == 0 {
		idleTotal = 64
	}
	allow := eo.allow
	if allow == "" {
		allow = "[127.0.0.0/8]"
	}
	yaml := `school:
  name: Test Academy
database: {{dir}}/gatehouse.db
proxy:
  listen: 127.0.0.1:0
  timeouts: {header: 1s, idle: 5s, dial: 2s, response: 5s, tunnel: 10s}
  limits: {connections: 100, per_client: ` + strconv.Itoa(cmp.Or(eo.perClient, 10)) + `, idle_per_site: 64, idle_total: ` + strconv.Itoa(idleTotal) + `}
  connect:
    ports: [443, ` + tport + `, ` + oport + `]
    ip_networks: [127.0.0.1/32]
  http:
    ports: [80, ` + oport + `, ` + tport + `]
    ip_networks: [127.0.0.1/32]
  auth:
    users_file: {{dir}}/users
    realm: Test Academy
  block_page:
    contact: the IT office
    reports_per_hour: 2
  pac:
    direct: [school.internal]
` + eo.extra + `
clients:
  allow: ` + allow + `
  default_group: students
  users:
    - name: jsmith
      group: staff
lists:
  - name: adult
    path: {{dir}}/adult.txt
    category: pornography
  - name: games
    path: {{dir}}/games.txt
    category: games
  - name: gamble-urls
    path: {{dir}}/gamble.txt
    category: gambling
    format: urls
  - name: doh-ips
    path: {{dir}}/doh-ips.txt
    category: doh
    format: ips
  - name: iwf
    path: {{dir}}/iwf.txt
    category: iwf
    format: sha256
groups:
  students:
    networks: [127.0.0.1/32]
    block: [pornography, games, gambling, vpn, doh]
  staff:
    networks: [127.0.0.2/32]
    block: [pornography, gambling]
    proxy_login: true
  guests: ~
`
	yaml = strings.ReplaceAll(yaml, "{{dir}}", e.dir)
	cfg, err := config.Parse([]byte(yaml), filepath.Join(e.dir, "gatehouse.yaml"))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	e.cfg = cfg
	e.cur.Store(cfg)
	sources, err := policy.Sources(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := bl.NewManager(filepath.Join(e.dir, "cache"), sources, cfg.Location(), nil)
	if _, err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.ix = m.Index()
	eng, err := policy.New(cfg, e.ix)
	if err != nil {
		t.Fatal(err)
	}
	var sk reports.Sink = e.sink
	if eo.sink != nil {
		sk = eo.sink
	}
	e.eng.Store(eng)
	s, err := New(Options{
		Engine:    e.eng.Load, // the config comes with it, as in serve
		Resolver:  cmp.Or[Resolver](eo.resolver, e.res),
		Sink:      sk,
		RootCAs:   eo.roots,
		Certs:     eo.certs,
		Identity:  eo.identity,
		Directory: eo.directory,
	})
	if err != nil {
		t.Fatal(err)
	}
	if eo.tlsPort {
		s.tlsPort = oport
	}
	e.s = s
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	s.AddOwnListener(ln.Addr())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return e
}

// allowPort adds a port of a test origin to proxy.http.ports (the proxy
// reads the config per request).
func (e *env) allowPort(port string) {
	n, err := strconv.Atoi(port)
	if err != nil {
		e.t.Fatal(err)
	}
	e.editProxy(func(p *config.Proxy) { p.HTTP.Ports = append(slices.Clone(p.HTTP.Ports), n) })
}

// editProxy changes the proxy section of the running config and publishes
// a new engine built from it, as a reload would (edit must not change the
// slices it is given in place).
func (e *env) editProxy(edit func(p *config.Proxy)) {
	c := *e.cur.Load()
	edit(&c.Proxy)
	eng, err := policy.New(&c, e.ix)
	if err != nil {
		e.t.Fatal(err)
	}
	e.cur.Store(&c)
	e.eng.Store(eng)
}

func hashHex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// originURL is the plain origin's URL under a name.
func (e *env) originURL(host, path string) string {
	_, port, _ := net.SplitHostPort(e.origin.Listener.Addr().String())
	return "http://" + host + ":" + port + path
}

func (e *env) tlsURL(host, path string) string {
	_, port, _ := net.SplitHostPort(e.tlsOrig.Listener.Addr().String())
	return "https://" + host + ":" + port + path
}

// client is an HTTP client using the proxy from source address src
// ("" = 127.0.0.1), with an optional login.
func (e *env) client(src, user, pass string) *http.Client {
	pu := &url.URL{Scheme: "http", Host: e.addr}
	if user != "" {
		pu.User = url.UserPassword(user, pass)
	}
	d := &net.Dialer{Timeout: 2 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	tr := &http.Transport{
		Proxy:           http.ProxyURL(pu),
		DialContext:     d.DialContext,
		TLSClientConfig: e.tlsOrig.Client().Transport.(*http.Transport).TLSClientConfig.Clone(),
	}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: browser{tr}, Timeout: 5 * time.Second}
}

// browser sends requests as a browser's page loads: with an Accept that
// names HTML, so that blocks answer with the block page (wantsPage).
type browser struct{ *http.Transport }

// browserAccept is Chromium's Accept for a page load.
const browserAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"

func (b browser) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Accept") == "" {
		r = r.Clone(r.Context())
		r.Header.Set("Accept", browserAccept)
	}
	return b.Transport.RoundTrip(r)
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading: %v", u, err)
	}
	return resp, string(b)
}

// dial opens a raw connection to the proxy from src.
func (e *env) dial(src string) net.Conn {
	e.t.Helper()
	d := &net.Dialer{Timeout: 2 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// reportForm is the "report a mistake" form of the block page shown to
// client for ref at u (the page's address as it shows it), as the
// browser sends it, with the pupil's note.
func (e *env) reportForm(client, ref, u, category, why string) url.Values {
	tok := e.s.reports.key.token(netip.MustParseAddr(client), ref, u, category)
	return url.Values{"ref": {ref}, "url": {u}, "category": {category}, "t": {tok}, "why": {why}}
}

var hiddenField = regexp.MustCompile(`<input type="hidden" name="([a-z]+)" value="([^"]*)">`)

// formOf is the "report a mistake" form of a block page as a browser
// sends it, with the note why.
func formOf(t testing.TB, page, why string) url.Values {
	t.Helper()
	f := url.Values{}
	for _, m := range hiddenField.FindAllStringSubmatch(page, -1) {
		f.Set(m[1], html.UnescapeString(m[2]))
	}
	if f.Get("t") == "" || f.Get("ref") == "" {
		t.Fatalf("no report form on the page:\n%s", page)
	}
	f.Set("why", why)
	return f
}
