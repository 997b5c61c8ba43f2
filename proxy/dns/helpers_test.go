package dns

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/policy"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// testUpstream is a loopback DNS server written with miekg/dns.
type testUpstream struct {
	addr netip.AddrPort
	mu   sync.Mutex
	hits map[string]int
	fail atomic.Bool // answer SERVFAIL
	// hold (under mu), if set, keeps queries for slow* names waiting until
	// closed; held counts those waiting.
	hold chan struct{}
	held atomic.Int32
	a    net.IP
	srvs []*mdns.Server
}

func startUpstream(t testing.TB, a string) *testUpstream {
	t.Helper()
	u := &testUpstream{hits: map[string]int{}, a: net.ParseIP(a)}
	pc, ln, err := listenBoth("127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	u.addr = netip.MustParseAddrPort(pc.LocalAddr().String())
	h := mdns.HandlerFunc(u.serve)
	u.srvs = []*mdns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}}
	for _, s := range u.srvs {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go func() { _ = s.ActivateAndServe() }()
		<-started
	}
	t.Cleanup(func() {
		for _, s := range u.srvs {
			_ = s.Shutdown()
		}
	})
	return u
}

// holdSlow makes queries for slow* names wait until hold is closed.
func (u *testUpstream) holdSlow(hold chan struct{}) {
	u.mu.Lock()
	u.hold = hold
	u.mu.Unlock()
}

// waitHeld waits until n queries are held (closing hold and failing if
// they do not arrive).
func (u *testUpstream) waitHeld(t *testing.T, n int32, hold chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for u.held.Load() < n {
		if time.Now().After(deadline) {
			close(hold)
			t.Fatalf("only %d of %d queries reached the upstream", u.held.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (u *testUpstream) count(name string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.hits[strings.ToLower(name)]
}

func (u *testUpstream) serve(w mdns.ResponseWriter, r *mdns.Msg) {
	q := r.Question[0]
	u.mu.Lock()
	u.hits[strings.ToLower(q.Name)]++
	hold := u.hold
	u.mu.Unlock()
	m := new(mdns.Msg)
	m.SetReply(r)
	if o := r.IsEdns0(); o != nil {
		m.SetEdns0(4096, o.Do())
	}
	if u.fail.Load() {
		m.Rcode = mdns.RcodeServerFailure
		_ = w.WriteMsg(m)
		return
	}
	name := strings.ToLower(q.Name)
	if hold != nil && strings.HasPrefix(name, "slow") {
		u.held.Add(1)
		<-hold
	}
	hdr := func(n string, t uint16, ttl uint32) mdns.RR_Header {
		return mdns.RR_Header{Name: n, Rrtype: t, Class: mdns.ClassINET, Ttl: ttl}
	}
	switch {
	case name == "cdn.example.":
		m.Answer = append(m.Answer, &mdns.CNAME{Hdr: hdr(q.Name, mdns.TypeCNAME, 300), Target: "edge.porn.example."},
			&mdns.A{Hdr: hdr("edge.porn.example.", mdns.TypeA, 300), A: u.a})
	case name == "google-alias.example." && (q.Qtype == mdns.TypeA || q.Qtype == mdns.TypeAAAA):
		// An alias to a search engine's name, as a recursive resolver
		// answers it: the chain and the search engine's own (unsafe)
		// addresses.
		m.Answer = append(m.Answer, &mdns.CNAME{Hdr: hdr(q.Name, mdns.TypeCNAME, 300), Target: "www.google.com."})
		if q.Qtype == mdns.TypeA {
			m.Answer = append(m.Answer, &mdns.A{Hdr: hdr("www.google.com.", mdns.TypeA, 300), A: net.ParseIP("198.51.100.7")})
		} else {
			m.Answer = append(m.Answer, &mdns.AAAA{Hdr: hdr("www.google.com.", mdns.TypeAAAA, 300), AAAA: net.ParseIP("2001:db8::7")})
		}
	case name == "games-cdn.example." && q.Qtype == mdns.TypeA:
		m.Answer = append(m.Answer, &mdns.CNAME{Hdr: hdr(q.Name, mdns.TypeCNAME, 300), Target: "edge.games.example."},
			&mdns.A{Hdr: hdr("edge.games.example.", mdns.TypeA, 300), A: u.a})
	case name == "nx.example.":
		m.Rcode = mdns.RcodeNameError
		m.Ns = append(m.Ns, &mdns.SOA{Hdr: hdr("example.", mdns.TypeSOA, 900), Ns: "ns.example.", Mbox: "h.example.", Minttl: 120})
	case name == "big.example." && q.Qtype == mdns.TypeTXT:
		for i := 0; i < 20; i++ {
			m.Answer = append(m.Answer, &mdns.TXT{Hdr: hdr(q.Name, mdns.TypeTXT, 300), Txt: []string{strings.Repeat(string(rune('a'+i)), 100)}})
		}
	case q.Qtype == mdns.TypeHTTPS && strings.HasPrefix(name, "svcporn."):
		// An HTTPS answer whose target is a blocked name, its addresses
		// in the additional section.
		m.Answer = append(m.Answer, &mdns.HTTPS{SVCB: mdns.SVCB{Hdr: hdr(q.Name, mdns.TypeHTTPS, 300), Priority: 1, Target: "edge.porn.example.",
			Value: []mdns.SVCBKeyValue{&mdns.SVCBAlpn{Alpn: []string{"h2"}}}}})
		m.Extra = append(m.Extra, &mdns.A{Hdr: hdr("edge.porn.example.", mdns.TypeA, 300), A: net.ParseIP("198.51.100.9")})
	case q.Qtype == mdns.TypeA && strings.HasPrefix(name, "extraporn."):
		// An answer carrying a record of a blocked name it does not point
		// at (as a forwarder that passes on what an authority added may).
		m.Answer = append(m.Answer, &mdns.A{Hdr: hdr(q.Name, mdns.TypeA, 300), A: u.a})
		m.Extra = append(m.Extra, &mdns.A{Hdr: hdr("www.porn.example.", mdns.TypeA, 300), A: net.ParseIP("198.51.100.9")})
	case q.Qtype == mdns.TypeHTTPS && strings.HasPrefix(name, "svcextra."):
		// An HTTPS answer whose target's addresses come in the
		// additional section (RFC 9460 section 4.1), no hints.
		m.Answer = append(m.Answer, &mdns.HTTPS{SVCB: mdns.SVCB{Hdr: hdr(q.Name, mdns.TypeHTTPS, 300), Priority: 1, Target: "svc.target.example.",
			Value: []mdns.SVCBKeyValue{&mdns.SVCBAlpn{Alpn: []string{"h2"}}}}})
		m.Extra = append(m.Extra, &mdns.AAAA{Hdr: hdr("svc.target.example.", mdns.TypeAAAA, 300), AAAA: net.ParseIP("2001:db8::1")},
			&mdns.A{Hdr: hdr("svc.target.example.", mdns.TypeA, 300), A: u.a})
	case q.Qtype == mdns.TypeHTTPS:
		rr := &mdns.HTTPS{SVCB: mdns.SVCB{Hdr: hdr(q.Name, mdns.TypeHTTPS, 300), Priority: 1, Target: ".",
			Value: []mdns.SVCBKeyValue{&mdns.SVCBAlpn{Alpn: []string{"h2", "h3"}}, &mdns.SVCBECHConfig{ECH: []byte{0, 4, 1, 2, 3, 4}},
				&mdns.SVCBIPv4Hint{Hint: []net.IP{u.a}}, &mdns.SVCBIPv6Hint{Hint: []net.IP{net.ParseIP("2001:db8::1")}}}}}
		m.Answer = append(m.Answer, rr)
	case q.Qtype == mdns.TypeA:
		ttl := uint32(300)
		if strings.HasPrefix(name, "short.") {
			ttl = 5
		}
		m.Answer = append(m.Answer, &mdns.A{Hdr: hdr(q.Name, mdns.TypeA, ttl), A: u.a})
	case q.Qtype == mdns.TypeAAAA && strings.HasPrefix(name, "dns64local."):
		// The same with a local-use prefix (RFC 8215), 64:ff9b:1::/48 in
		// RFC 6052's /48 layout (bits 64-71 zero).
		a4 := u.a.To4()
		m.Answer = append(m.Answer, &mdns.AAAA{Hdr: hdr(q.Name, mdns.TypeAAAA, 300), AAAA: net.IP{0, 0x64, 0xff, 0x9b, 0, 1, a4[0], a4[1], 0, a4[2], a4[3], 0, 0, 0, 0, 0}})
	case q.Qtype == mdns.TypeAAAA && strings.HasPrefix(name, "dns64."):
		// What a DNS64 resolver synthesises for an IPv4-only name: the
		// IPv4 address inside 64:ff9b::/96.
		a4 := u.a.To4()
		m.Answer = append(m.Answer, &mdns.AAAA{Hdr: hdr(q.Name, mdns.TypeAAAA, 300), AAAA: net.IP{0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0, a4[0], a4[1], a4[2], a4[3]}})
	case q.Qtype == mdns.TypeAAAA:
		m.Answer = append(m.Answer, &mdns.AAAA{Hdr: hdr(q.Name, mdns.TypeAAAA, 300), AAAA: net.ParseIP("2001:db8::1")})
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := 512
		if o := r.IsEdns0(); o != nil {
			size = int(o.UDPSize())
		}
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}

// sink records events.
type sink struct {
	mu  sync.Mutex
	evs []reports.Event
}

func (s *sink) Record(e reports.Event) bool {
	s.mu.Lock()
	s.evs = append(s.evs, e)
	s.mu.Unlock()
	return true
}

func (s *sink) events() []reports.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]reports.Event(nil), s.evs...)
}

const testConfig = `
database: {{dir}}/gh.db
lists:
  - name: adult
    path: {{dir}}/adult.txt
    category: pornography
  - name: gamble
    path: {{dir}}/gamble.txt
    category: gambling
clients:
  default_group: staff
  users:
    - name: amy
      group: students
groups:
  students:
    networks: [127.0.0.2/32]
    block: [pornography, gambling, vpn, web-proxy, tor, doh, private-relay]
    safe_search: strict
  staff:
    networks: [127.0.0.1/32]
    block: [pornography]
    safe_search: "off"
`

// testFiles are testConfig's lists.
var testFiles = map[string]string{"adult.txt": "porn.example\n", "gamble.txt": "gamble.example\n"}

// testEngine loads the test config and lists.
func testEngine(t testing.TB) *policy.Engine {
	t.Helper()
	return engineWith(t, testConfig, testFiles)
}

// engineWith loads a config text ({{dir}} standing for the directory the
// list files are written to) and its lists.
func engineWith(t testing.TB, text string, files map[string]string) *policy.Engine {
	t.Helper()
	dir := t.TempDir()
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Parse([]byte(strings.ReplaceAll(text, "{{dir}}", dir)), filepath.Join(dir, "g.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	src, err := policy.Sources(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := bl.NewManager(filepath.Join(dir, "cache"), src, cfg.Location(), nil)
	if _, err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	e, err := policy.New(cfg, m.Index())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

type testServer struct {
	*Server
	up    *testUpstream
	sink  *sink
	udp   string
	tcp   string
	clock *testClock
	reg   *prometheus.Registry
}

type testClock struct{ ns atomic.Int64 }

func (c *testClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *testClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// startServer runs a Gatehouse resolver on a random loopback port with a
// loopback upstream; mod adjusts the options.
// udpClient is one UDP socket to ts's resolver (one source port, so its
// queries reach one worker), closed when the test ends.
func (ts *testServer) udpClient(t testing.TB) net.Conn {
	t.Helper()
	c, err := net.Dial("udp", ts.udp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func startServer(t testing.TB, mod func(*Options)) *testServer {
	t.Helper()
	up := startUpstream(t, "192.0.2.1")
	ups, err := NewUpstreams([]UpstreamSpec{{Addr: up.addr}}, nil, 300*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	eng := testEngine(t)
	ts := &testServer{up: up, sink: &sink{}, clock: &testClock{}, reg: prometheus.NewRegistry()}
	ts.clock.ns.Store(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC).UnixNano())
	o := Options{
		Listen: []string{"127.0.0.1:0"}, Engine: func() *policy.Engine { return eng }, Upstreams: ups,
		Cache:         CacheOptions{Entries: 1000, ServeStale: time.Hour, Prefetch: true},
		BlockResponse: BlockNXDomain, Sink: ts.sink, Collapse: 50 * time.Millisecond, Registry: ts.reg, Now: ts.clock.now,
	}
	if mod != nil {
		mod(&o)
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	ts.Server = s
	for _, a := range s.Addrs() {
		switch a.(type) {
		case *net.UDPAddr:
			ts.udp = a.String()
		case *net.TCPAddr:
			if ts.tcp == "" {
				ts.tcp = a.String()
			}
		}
	}
	return ts
}

// ask queries the server from the loopback address from (127.0.0.x).
func ask(t testing.TB, netw, server, from, name string, qtype uint16, edns bool) *mdns.Msg {
	t.Helper()
	c := &mdns.Client{Net: netw, Timeout: 30 * time.Second}
	ip := net.ParseIP(from)
	if netw == "udp" {
		c.Dialer = &net.Dialer{LocalAddr: &net.UDPAddr{IP: ip}, Timeout: 30 * time.Second}
	} else if netw == "tcp" {
		c.Dialer = &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 30 * time.Second}
	}
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), qtype)
	if edns {
		m.SetEdns0(1232, true)
	}
	r, _, err := c.Exchange(m, server)
	if err != nil {
		t.Fatalf("%s %s from %s: %v", netw, name, from, err)
	}
	if r.Id != m.Id || len(r.Question) != 1 || r.Question[0].Name != m.Question[0].Name {
		t.Fatalf("id/question not echoed: %v", r)
	}
	return r
}

func edeCode(m *mdns.Msg) int {
	if o := m.IsEdns0(); o != nil {
		for _, op := range o.Option {
			if e, ok := op.(*mdns.EDNS0_EDE); ok {
				return int(e.InfoCode)
			}
		}
	}
	return -1
}

func firstA(m *mdns.Msg) string {
	for _, rr := range m.Answer {
		if a, ok := rr.(*mdns.A); ok {
			return a.A.String()
		}
	}
	return ""
}

// testCert makes a self-signed certificate for 127.0.0.1 and dns.test.
func testCert(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dns.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"dns.test"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// setUpstreamTimeout sets the exchange timeout of the test upstreams: the
// clients' own (fixed when they were built) and the set's.
func setUpstreamTimeout(u *Upstreams, d time.Duration) {
	u.timeout = d
	for _, up := range u.def {
		for _, c := range []*mdns.Client{up.udp, up.tcp} {
			if c != nil {
				c.Timeout = d
			}
		}
	}
}

// histCount is a histogram's sample count and sum.
func histCount(t testing.TB, h prometheus.Histogram) (uint64, float64) {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

// firstRR is the first record of type T in m's answer.
func firstRR[T mdns.RR](m *mdns.Msg) (T, bool) {
	for _, rr := range m.Answer {
		if v, ok := rr.(T); ok {
			return v, true
		}
	}
	var zero T
	return zero, false
}
