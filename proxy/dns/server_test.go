package dns

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/policy"
	"github.com/gatehouse-filter/gatehouse/reports"
)

const staff, student = "127.0.0.1", "127.0.0.2"

func TestAllowedResolvesUDPAndTCP(t *testing.T) {
	ts := startServer(t, nil)
	for _, netw := range []string{"udp", "tcp"} {
		for _, edns := range []bool{false, true} {
			r := ask(t, netw, map[string]string{"udp": ts.udp, "tcp": ts.tcp}[netw], student, "WwW.Example.ORG", mdns.TypeA, edns)
			if r.Rcode != mdns.RcodeSuccess || firstA(r) != "192.0.2.1" || !r.RecursionAvailable {
				t.Fatalf("%s edns=%v: %v", netw, edns, r)
			}
			if (r.IsEdns0() != nil) != edns {
				t.Fatalf("%s: OPT present=%v, want %v", netw, r.IsEdns0() != nil, edns)
			}
			if edns && (r.IsEdns0().UDPSize() != EDNSSize || !r.IsEdns0().Do()) {
				t.Fatalf("EDNS: %v", r.IsEdns0())
			}
		}
	}
	// Other types are passed through.
	if r := ask(t, "udp", ts.udp, staff, "www.example.org", mdns.TypeAAAA, true); len(r.Answer) != 1 {
		t.Fatalf("AAAA: %v", r)
	}
	if r := ask(t, "udp", ts.udp, staff, "nx.example", mdns.TypeA, true); r.Rcode != mdns.RcodeNameError || len(r.Ns) != 1 {
		t.Fatalf("NXDOMAIN: %v", r)
	}
}

func TestBlockedPerGroup(t *testing.T) {
	ts := startServer(t, nil)
	r := ask(t, "udp", ts.udp, student, "www.gamble.example", mdns.TypeA, true)
	if r.Rcode != mdns.RcodeNameError || len(r.Ns) != 1 || edeCode(r) != int(mdns.ExtendedErrorCodeBlocked) {
		t.Fatalf("student: %v", r)
	}
	if soa := r.Ns[0].(*mdns.SOA); soa.Hdr.Ttl != 60 || soa.Minttl != 60 {
		t.Fatalf("block TTL: %v", soa)
	}
	r = ask(t, "tcp", ts.tcp, staff, "www.gamble.example", mdns.TypeA, true)
	if r.Rcode != mdns.RcodeSuccess || firstA(r) != "192.0.2.1" {
		t.Fatalf("staff: %v", r)
	}
	if n := ts.up.count("www.gamble.example."); n != 1 {
		t.Fatalf("upstream saw the blocked name %d times, want 1 (staff only)", n)
	}
	evs := waitEvents(t, ts, 1)
	e := evs[0]
	if e.Client != netip.MustParseAddr(student) || e.Group != "students" || e.Name != "www.gamble.example" || e.Category != "gambling" ||
		e.Action != "block" || e.List != "gamble" || e.Entry != "gamble.example" || e.Protocol != "udp" || e.QType != "A" || e.Count != 1 {
		t.Fatalf("event: %+v", e)
	}
}

// TestWholeSiteURLEntryBlocksName: a URL entry that covers a whole site (a
// URL list's bare host, host/ in a restricted list loaded as URLs, a deny
// entry pasted from the address bar) blocks the name, on the hosts it
// covers in the proxy, with an event naming its list and entry (a
// restricted one by hash): otherwise a DNS-only site, or HTTPS through an
// undecrypted CONNECT, reaches the site. An entry with a path does not.
func TestWholeSiteURLEntryBlocksName(t *testing.T) {
	text := strings.Replace(testConfig, "lists:\n", `lists:
  - name: adult-urls
    path: {{dir}}/adult-urls.txt
    category: pornography
    format: urls
  - name: iwf-urls
    path: {{dir}}/iwf.txt
    category: iwf
    format: urls
`, 1)
	text = strings.Replace(text, "    safe_search: strict\n", "    safe_search: strict\n    deny: [\"https://www.denied.example/\"]\n", 1)
	files := map[string]string{"adult-urls.txt": "wholesite.example\npathsite.example/\nother.example/videos\n", "iwf.txt": "abuse.example/\n"}
	maps.Copy(files, testFiles)
	eng := engineWith(t, text, files)
	ts := startServer(t, func(o *Options) { o.Engine = func() *policy.Engine { return eng } })
	sum := sha256.Sum256([]byte("abuse.example/"))
	want := []struct {
		name, list, entry string
		ede               uint16
	}{
		{"wholesite.example", "adult-urls", "wholesite.example", mdns.ExtendedErrorCodeBlocked},
		{"www.pathsite.example", "adult-urls", "pathsite.example/", mdns.ExtendedErrorCodeBlocked},
		{"abuse.example", "restricted", hex.EncodeToString(sum[:]), mdns.ExtendedErrorCodeCensored},
		{"denied.example", "group/students/deny", "denied.example/", mdns.ExtendedErrorCodeBlocked},
		{"www.denied.example", "group/students/deny", "denied.example/", mdns.ExtendedErrorCodeBlocked},
	}
	for _, w := range want {
		if r := ask(t, "udp", ts.udp, student, w.name, mdns.TypeA, true); r.Rcode != mdns.RcodeNameError || edeCode(r) != int(w.ede) {
			t.Errorf("%s: %v", w.name, r)
		}
		if n := ts.up.count(w.name + "."); n != 0 {
			t.Errorf("upstream asked for %s %d times", w.name, n)
		}
	}
	if r := ask(t, "udp", ts.udp, student, "other.example", mdns.TypeA, true); r.Rcode != mdns.RcodeSuccess || firstA(r) != "192.0.2.1" {
		t.Errorf("other.example (only /videos listed): %v", r)
	}
	evs := waitEvents(t, ts, len(want))
	for i, w := range want {
		if e := evs[i]; e.Name != w.name || e.Action != "block" || e.List != w.list || e.Entry != w.entry || e.Restricted != (w.list == "restricted") {
			t.Errorf("event for %s: %+v", w.name, e)
		}
	}
}

func TestBlockResponses(t *testing.T) {
	for _, tc := range []struct {
		mode string
		ip   string
		want string
	}{{BlockNull, "", "0.0.0.0"}, {BlockBlockPage, "192.0.2.99", "192.0.2.99"}} {
		ts := startServer(t, func(o *Options) {
			o.BlockResponse = tc.mode
			if tc.ip != "" {
				o.BlockPageIP = netip.MustParseAddr(tc.ip)
			}
		})
		r := ask(t, "udp", ts.udp, student, "porn.example", mdns.TypeA, true)
		if r.Rcode != mdns.RcodeSuccess || firstA(r) != tc.want || r.Answer[0].Header().Ttl != 60 || edeCode(r) != 15 {
			t.Fatalf("%s: %v", tc.mode, r)
		}
		r = ask(t, "udp", ts.udp, student, "porn.example", mdns.TypeMX, true)
		if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 0 || len(r.Ns) != 1 {
			t.Fatalf("%s MX: want NODATA, got %v", tc.mode, r)
		}
	}
}

func TestCNAMEToBlockedTargetIsBlocked(t *testing.T) {
	ts := startServer(t, nil)
	for i := 0; i < 2; i++ { // miss, then cache hit
		r := ask(t, "udp", ts.udp, staff, "cdn.example", mdns.TypeA, true)
		if r.Rcode != mdns.RcodeNameError || edeCode(r) != 15 {
			t.Fatalf("round %d: %v", i, r)
		}
	}
	// The first attempt is recorded at once (alerts must not wait for the
	// collapse window); the repeat follows as one event with its count.
	evs := waitEvents(t, ts, 2)
	if evs[0].Name != "cdn.example" || evs[0].Category != "pornography" || evs[0].Count != 1 {
		t.Fatalf("first event: %+v", evs[0])
	}
	if evs[1].Name != "cdn.example" || evs[1].Count != 1 {
		t.Fatalf("follow-up event: %+v", evs[1])
	}
}

// TestRepeatsCollapse: a burst of retries reaches the sink as the first
// event plus one follow-up carrying the count.
func TestRepeatsCollapse(t *testing.T) {
	ts := startServer(t, nil)
	for range 5 {
		ask(t, "udp", ts.udp, staff, "cdn.example", mdns.TypeA, true)
	}
	waitEvents(t, ts, 2)
	time.Sleep(200 * time.Millisecond) // more than the 50 ms window: nothing else may come
	evs := ts.sink.events()
	if len(evs) != 2 || evs[0].Count != 1 || evs[1].Count != 4 {
		t.Fatalf("events: %+v", evs)
	}
}

func TestSafeSearchRewrite(t *testing.T) {
	ts := startServer(t, nil)
	r := ask(t, "udp", ts.udp, student, "www.google.co.uk", mdns.TypeA, true)
	if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 2 {
		t.Fatalf("student: %v", r)
	}
	c, ok := r.Answer[0].(*mdns.CNAME)
	if !ok || c.Target != "forcesafesearch.google.com." || firstA(r) != "192.0.2.1" {
		t.Fatalf("rewrite: %v", r)
	}
	if ts.up.count("forcesafesearch.google.com.") != 1 || ts.up.count("www.google.co.uk.") != 0 {
		t.Fatal("the safe endpoint must be resolved through the upstream, the original name not at all")
	}
	r = ask(t, "udp", ts.udp, staff, "www.google.co.uk", mdns.TypeA, true)
	if _, ok := r.Answer[0].(*mdns.A); !ok {
		t.Fatalf("staff (safe search off): %v", r)
	}
}

// TestSafeSearchRewriteAllowListed: a group with strict safe search that
// allow-lists YouTube and Google (to lift a block for lessons) still gets
// the safe endpoints: an allow entry lifts blocks, not safe search.
func TestSafeSearchRewriteAllowListed(t *testing.T) {
	text := strings.Replace(testConfig, "    safe_search: strict\n", "    safe_search: strict\n    allow: [youtube.com, google.co.uk]\n", 1)
	eng := engineWith(t, text, testFiles)
	ts := startServer(t, func(o *Options) { o.Engine = func() *policy.Engine { return eng } })
	for _, tt := range []struct{ name, target string }{
		{"www.youtube.com", "restrict.youtube.com."},
		{"www.google.co.uk", "forcesafesearch.google.com."},
	} {
		r := ask(t, "udp", ts.udp, student, tt.name, mdns.TypeA, true)
		if c, ok := firstRR[*mdns.CNAME](r); r.Rcode != mdns.RcodeSuccess || !ok || c.Target != tt.target || firstA(r) != "192.0.2.1" {
			t.Errorf("%s: %v", tt.name, r)
		}
		if n := ts.up.count(tt.name + "."); n != 0 {
			t.Errorf("upstream asked for %s %d times", tt.name, n)
		}
	}
	if r := ask(t, "udp", ts.udp, student, "music.youtube.com", mdns.TypeA, true); r.Rcode != mdns.RcodeSuccess || firstA(r) != "192.0.2.1" {
		t.Errorf("music.youtube.com (no safe endpoint): %v", r)
	}
}

// TestSafeSearchConcurrent: rewritten answers built at once from the same
// cached endpoint (its unpacked answer is shared, safeAnswers) are each
// whole and right, with and without EDNS, over UDP and TCP (run with -race).
func TestSafeSearchConcurrent(t *testing.T) {
	ts := startServer(t, nil)
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			proto := []string{"udp", "tcp"}[g%2]
			addr := ts.udp
			if proto == "tcp" {
				addr = ts.tcp
			}
			for i := range 25 {
				// Replies reuse their parts (rewriteBuf): none carries the
				// OPT, question or answers of the reply before it.
				edns, qt, want := (g+i)%3 != 0, mdns.TypeA, 2
				if i%5 == 4 {
					qt, want = mdns.TypeCNAME, 1
				}
				r := ask(t, proto, addr, student, "www.google.co.uk", qt, edns)
				c, ok := r.Answer[0].(*mdns.CNAME)
				if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != want || !ok || c.Target != "forcesafesearch.google.com." ||
					(r.IsEdns0() != nil) != edns || len(r.Question) != 1 || r.Question[0].Qtype != qt ||
					r.Question[0].Name != "www.google.co.uk." || c.Hdr.Name != "www.google.co.uk." ||
					(want == 2 && (firstA(r) != "192.0.2.1" || r.Answer[1].Header().Name != "forcesafesearch.google.com.")) {
					errs <- r.String()
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("rewritten answer: %s", e)
	}
	if n := ts.up.count("forcesafesearch.google.com."); n != 2 {
		t.Errorf("the endpoint was asked upstream %d times, want 2 (cached, with EDNS and without)", n)
	}
}

func TestBypassNames(t *testing.T) {
	ts := startServer(t, nil)
	for _, n := range []string{"use-application-dns.net", "mask.icloud.com", "mask-h2.icloud.com"} {
		for _, from := range []string{staff, student} {
			r := ask(t, "udp", ts.udp, from, n, mdns.TypeA, true)
			if r.Rcode != mdns.RcodeNameError {
				t.Fatalf("%s from %s: %v", n, from, r)
			}
		}
	}
	for _, n := range []string{"resolver.arpa", "_dns.resolver.arpa"} {
		r := ask(t, "udp", ts.udp, student, n, mdns.TypeSVCB, true)
		if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 0 || len(r.Ns) != 1 {
			t.Fatalf("DDR %s: want NODATA, got %v", n, r)
		}
	}
	// VPN lookups are bypass attempts at high severity.
	if r := ask(t, "udp", ts.udp, student, "nordvpn.com", mdns.TypeA, true); r.Rcode != mdns.RcodeNameError {
		t.Fatalf("vpn: %v", r)
	}
	// DoH provider: a capability, reported once a day.
	for i := 0; i < 3; i++ {
		ask(t, "udp", ts.udp, student, "dns.google", mdns.TypeA, true)
	}
	time.Sleep(150 * time.Millisecond)
	var relay, doh, vpn, other int
	for _, e := range ts.sink.events() {
		switch {
		case e.Category == "private-relay" && e.Severity == bl.SeverityLow && e.Bypass:
			relay++
		case e.Category == "doh" && e.Severity == bl.SeverityLow && e.Bypass:
			doh++
		case e.Category == "vpn" && e.Severity == bl.SeverityHigh && e.Bypass:
			vpn++
		default:
			other++
			t.Errorf("unexpected event %+v", e)
		}
	}
	// mask and mask-h2 from two clients: one per client per day.
	if relay != 2 || doh != 1 || vpn != 1 {
		t.Fatalf("relay %d doh %d vpn %d other %d", relay, doh, vpn, other)
	}
	if ts.up.count("use-application-dns.net.")+ts.up.count("mask.icloud.com.")+ts.up.count("_dns.resolver.arpa.") != 0 {
		t.Fatal("bypass names reached the upstream")
	}
}

// TestECHStripped: HTTPS records keep alpn but lose ech, ipv4hint and
// ipv6hint (a hint is an address the A/AAAA check never saw).
func TestECHStripped(t *testing.T) {
	ts := startServer(t, nil)
	for i := 0; i < 2; i++ {
		r := ask(t, "tcp", ts.tcp, staff, "www.example.org", mdns.TypeHTTPS, true)
		h, ok := r.Answer[0].(*mdns.HTTPS)
		if !ok || len(h.Value) != 1 || h.Value[0].Key() != mdns.SVCB_ALPN {
			t.Fatalf("round %d: %v", i, r)
		}
	}
}

// alpn lists an HTTPS answer's alpn values.
func alpn(t *testing.T, r *mdns.Msg) []string {
	t.Helper()
	h, ok := r.Answer[0].(*mdns.HTTPS)
	if !ok {
		t.Fatalf("not an HTTPS answer: %v", r)
	}
	for _, kv := range h.Value {
		if kv.Key() == mdns.SVCB_ECHCONFIG {
			t.Errorf("ech left in %v", h)
		}
		if a, ok := kv.(*mdns.SVCBAlpn); ok {
			return a.Alpn
		}
	}
	return nil
}

// With the CA loaded, HTTPS records of names the client's group decrypts
// lose h3 (students: search, so YouTube; staff: blocks, nothing), from
// the cache too; without it, nobody's do.
func TestH3StrippedForDecryptedNames(t *testing.T) {
	var ca atomic.Bool
	ca.Store(true)
	ts := startServer(t, func(o *Options) { o.Decrypting = ca.Load })
	for round := range 2 { // the second from the cache
		for _, tc := range []struct {
			from, name string
			want       string
		}{
			{student, "vimeo.com", "h2"},
			{staff, "vimeo.com", "h2 h3"},
			{student, "news.example", "h2 h3"},
		} {
			r := ask(t, "udp", ts.udp, tc.from, tc.name, mdns.TypeHTTPS, true)
			if got := strings.Join(alpn(t, r), " "); got != tc.want {
				t.Errorf("round %d, %s asking %s: alpn %q, want %q", round, tc.from, tc.name, got, tc.want)
			}
		}
	}
	if n := ts.up.count("vimeo.com."); n != 2 {
		t.Errorf("upstream asked %d times for the two shapes", n)
	}
	ca.Store(false)
	if got := alpn(t, ask(t, "udp", ts.udp, student, "vimeo.com", mdns.TypeHTTPS, true)); len(got) != 2 {
		t.Errorf("without a CA: alpn %v", got)
	}
}

func TestStripH3(t *testing.T) {
	m := new(mdns.Msg)
	m.Answer = []mdns.RR{&mdns.HTTPS{SVCB: mdns.SVCB{Hdr: mdns.RR_Header{Name: "a.", Rrtype: mdns.TypeHTTPS, Class: mdns.ClassINET}, Priority: 1, Target: ".",
		Value: []mdns.SVCBKeyValue{&mdns.SVCBAlpn{Alpn: []string{"h3", "h3-29"}}, &mdns.SVCBNoDefaultAlpn{}, &mdns.SVCBPort{Port: 8443}}}}}
	if !stripH3(m) {
		t.Fatal("nothing changed")
	}
	v := m.Answer[0].(*mdns.HTTPS).Value
	if len(v) != 1 || v[0].Key() != mdns.SVCB_PORT {
		t.Errorf("left %v (an emptied alpn goes, with no-default-alpn)", v)
	}
}

func TestCacheHitDoesNotReachUpstream(t *testing.T) {
	ts := startServer(t, nil)
	ask(t, "udp", ts.udp, staff, "cached.example", mdns.TypeA, true)
	ts.clock.advance(100 * time.Second)
	r := ask(t, "udp", ts.udp, student, "CACHED.example", mdns.TypeA, true)
	if r.Question[0].Name != "CACHED.example." || firstA(r) != "192.0.2.1" {
		t.Fatalf("hit: %v", r)
	}
	if ttl := r.Answer[0].Header().Ttl; ttl != 200 {
		t.Fatalf("TTL not aged: %d", ttl)
	}
	if n := ts.up.count("cached.example."); n != 1 {
		t.Fatalf("upstream asked %d times", n)
	}
	// Negative answers are cached too.
	ask(t, "udp", ts.udp, staff, "nx.example", mdns.TypeA, true)
	ask(t, "udp", ts.udp, staff, "nx.example", mdns.TypeA, true)
	if n := ts.up.count("nx.example."); n != 1 {
		t.Fatalf("negative answer asked %d times", n)
	}
}

func TestSingleflight(t *testing.T) {
	ts := startServer(t, nil)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); ask(t, "udp", ts.udp, staff, "same.example", mdns.TypeA, false) }()
	}
	wg.Wait()
	if n := ts.up.count("same.example."); n > 3 {
		t.Fatalf("upstream asked %d times for 20 concurrent identical queries", n)
	}
}

func TestServeStaleThenServfail(t *testing.T) {
	ts := startServer(t, nil)
	ask(t, "udp", ts.udp, staff, "short.example", mdns.TypeA, true)
	ts.up.fail.Store(true)
	ts.clock.advance(10 * time.Second) // expired, within serve_stale
	r := ask(t, "udp", ts.udp, staff, "short.example", mdns.TypeA, true)
	if firstA(r) != "192.0.2.1" || r.Answer[0].Header().Ttl != staleTTL || edeCode(r) != int(mdns.ExtendedErrorCodeStaleAnswer) {
		t.Fatalf("stale: %v", r)
	}
	ts.clock.advance(2 * time.Hour) // past serve_stale
	r = ask(t, "udp", ts.udp, staff, "short.example", mdns.TypeA, true)
	if r.Rcode != mdns.RcodeServerFailure || edeCode(r) != int(mdns.ExtendedErrorCodeNoReachableAuthority) {
		t.Fatalf("servfail: %v", r)
	}
}

func TestTruncationOverUDPFullOverTCP(t *testing.T) {
	ts := startServer(t, nil)
	r := ask(t, "udp", ts.udp, staff, "big.example", mdns.TypeTXT, true)
	r.Compress = true
	if !r.Truncated || r.Len() > EDNSSize {
		t.Fatalf("udp: tc=%v len=%d", r.Truncated, r.Len())
	}
	r = ask(t, "udp", ts.udp, staff, "big.example", mdns.TypeTXT, false)
	r.Compress = true
	if !r.Truncated || r.Len() > 512 {
		t.Fatalf("udp no EDNS: tc=%v len=%d", r.Truncated, r.Len())
	}
	r = ask(t, "tcp", ts.tcp, staff, "big.example", mdns.TypeTXT, true)
	if r.Truncated || len(r.Answer) != 20 {
		t.Fatalf("tcp: tc=%v answers=%d", r.Truncated, len(r.Answer))
	}
}

func TestRefusedOutsideACL(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.ACL = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")} })
	if r := ask(t, "udp", ts.udp, "127.0.0.3", "www.example.org", mdns.TypeA, false); r.Rcode != mdns.RcodeRefused {
		t.Fatalf("outside: %v", r)
	}
	// (Over TCP and DoT the connection is closed unread: TestACLOnConnections.)
	if r := ask(t, "udp", ts.udp, staff, "www.example.org", mdns.TypeA, false); r.Rcode != mdns.RcodeSuccess {
		t.Fatalf("inside: %v", r)
	}
	if ts.up.count("www.example.org.") != 1 {
		t.Fatal("refused query reached upstream")
	}
}

func TestRateLimit(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.RateQPS, o.RateBurst = 50, 50 })
	refused := 0
	for i := 0; i < 80; i++ {
		if r := ask(t, "udp", ts.udp, student, "www.example.org", mdns.TypeA, false); r.Rcode == mdns.RcodeRefused {
			refused++
		}
	}
	if refused < 20 {
		t.Fatalf("refused %d of 80 with burst 50 (clock frozen)", refused)
	}
	if r := ask(t, "udp", ts.udp, staff, "www.example.org", mdns.TypeA, false); r.Rcode != mdns.RcodeSuccess {
		t.Fatal("another client was limited too")
	}
}

func TestRestrictedIsCensored(t *testing.T) {
	// CNAME chain and restricted tier share the block path; the restricted
	// tier answers EDE 16 without naming the entry.
	d := policy.Decision{Restricted: true, HasCategory: true, Category: bl.IWF}
	if e := ede(&d); e.InfoCode != mdns.ExtendedErrorCodeCensored || e.ExtraText != "" {
		t.Fatalf("%+v", e)
	}
}

func TestDoTListener(t *testing.T) {
	cert, pool := testCert(t)
	ts := startServer(t, func(o *Options) {
		o.TLSListen = []string{"127.0.0.1:0"}
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	})
	dot := ts.Addrs()[len(ts.Addrs())-1].String()
	c := &mdns.Client{Net: "tcp-tls", Timeout: 30 * time.Second, TLSConfig: &tls.Config{RootCAs: pool, ServerName: "dns.test"}}
	m := new(mdns.Msg)
	m.SetQuestion("porn.example.", mdns.TypeA)
	m.SetEdns0(1232, false)
	r, _, err := c.Exchange(m, dot)
	if err != nil || r.Rcode != mdns.RcodeNameError {
		t.Fatalf("%v %v", r, err)
	}
	if evs := waitEvents(t, ts, 1); evs[0].Protocol != "dot" {
		t.Fatalf("protocol %q", evs[0].Protocol)
	}
}

func TestDoTUpstreamAndConditionalForwarding(t *testing.T) {
	cert, pool := testCert(t)
	// A DoT upstream: a miekg/dns server behind TLS on loopback.
	inner := startUpstream(t, "192.0.2.7")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	srv := &mdns.Server{Listener: ln, Net: "tcp-tls", Handler: mdns.HandlerFunc(inner.serve)}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	school := startUpstream(t, "10.0.0.10")
	bad := startUpstream(t, "192.0.2.66")
	bad.fail.Store(true)
	// The plain upstream fails, DoT answers; school.internal goes to its own server.
	ups, err := NewUpstreams([]UpstreamSpec{{Addr: bad.addr},
		{Addr: netip.MustParseAddrPort(ln.Addr().String()), TLS: true, ServerName: "dns.test", TLSConfig: &tls.Config{RootCAs: pool}}},
		[]Zone{{Name: "School.Internal.", Servers: []UpstreamSpec{{Addr: school.addr}}}}, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, func(o *Options) { o.Upstreams = ups })
	if r := ask(t, "udp", ts.udp, staff, "www.example.org", mdns.TypeA, true); firstA(r) != "192.0.2.7" {
		t.Fatalf("failover to DoT: %v", r)
	}
	if r := ask(t, "udp", ts.udp, staff, "dc1.school.internal", mdns.TypeA, true); firstA(r) != "10.0.0.10" {
		t.Fatalf("conditional forwarding: %v", r)
	}
	if bad.count("www.example.org.") != 1 {
		t.Fatal("the failing upstream should have been tried first")
	}
	if inner.count("dc1.school.internal.") != 0 {
		t.Fatal("internal zone leaked to the public upstream")
	}
}

func TestMetricsExported(t *testing.T) {
	ts := startServer(t, nil)
	ask(t, "udp", ts.udp, student, "porn.example", mdns.TypeA, false)
	ask(t, "udp", ts.udp, student, "www.example.org", mdns.TypeA, false)
	mfs, err := ts.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{"gatehouse_dns_queries_total", "gatehouse_dns_cache_misses_total", "gatehouse_dns_upstream_duration_seconds", "gatehouse_dns_events_queued_total"} {
		if !names[n] {
			t.Errorf("metric %s missing", n)
		}
	}
}

func TestGracefulShutdownAnswersInFlight(t *testing.T) {
	hold := make(chan struct{})
	ts := startServer(t, func(o *Options) { setUpstreamTimeout(o.Upstreams, 10*time.Second) })
	ts.up.holdSlow(hold)
	const n = 20 // half over UDP, half over TCP, all waiting on the upstream
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			netw, addr := "udp", ts.udp
			if i%2 == 1 {
				netw, addr = "tcp", ts.tcp
			}
			m := new(mdns.Msg)
			m.SetQuestion(fmt.Sprintf("slow%d.example.", i), mdns.TypeA)
			r, _, err := (&mdns.Client{Net: netw, Timeout: 10 * time.Second}).Exchange(m, addr)
			if err == nil && firstA(r) != "192.0.2.1" {
				err = fmt.Errorf("%s: %v", netw, r)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	ts.up.waitHeld(t, n, hold)
	stopped := make(chan struct{})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ts.Shutdown(ctx) // SIGTERM
		close(stopped)
	}()
	select {
	case <-stopped:
		close(hold)
		t.Fatal("shutdown did not wait for the queries in flight")
	case <-time.After(100 * time.Millisecond):
	}
	close(hold)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("in-flight query not answered: %v", err)
	}
	<-stopped
	if _, err := net.Dial("tcp", ts.tcp); err == nil {
		t.Fatal("still listening after shutdown")
	}
}

func waitEvents(t *testing.T, ts *testServer, n int) []reports.Event {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // returns as soon as they are there
	for time.Now().Before(deadline) {
		if evs := ts.sink.events(); len(evs) >= n {
			return evs
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("want %d events, got %v", n, ts.sink.events())
	return nil
}

// TestBlockTemplate checks the packed block answer (header, question as
// asked, template sections) against the miekg/dns-built one.
func TestBlockTemplate(t *testing.T) {
	ts := startServer(t, nil)
	for _, tc := range []struct {
		name  string
		qtype uint16
		edns  bool
	}{{"WwW.GaMbLe.Example", mdns.TypeA, true}, {"www.gamble.example", mdns.TypeAAAA, false}, {"x.gamble.example", mdns.TypeMX, true}} {
		for _, netw := range []string{"udp", "tcp"} {
			addr := ts.udp
			if netw == "tcp" {
				addr = ts.tcp
			}
			r := ask(t, netw, addr, student, tc.name, tc.qtype, tc.edns)
			if r.Rcode != mdns.RcodeNameError || !r.RecursionAvailable || !r.RecursionDesired || len(r.Answer) != 0 || len(r.Ns) != 1 {
				t.Fatalf("%s %s: %v", netw, tc.name, r)
			}
			if r.Question[0].Name != tc.name+"." || r.Question[0].Qtype != tc.qtype {
				t.Fatalf("%s: question not echoed: %v", netw, r.Question[0])
			}
			soa, ok := r.Ns[0].(*mdns.SOA)
			if !ok || soa.Hdr.Name != tc.name+"." || soa.Ns != "gatehouse.invalid." || soa.Mbox != "hostmaster.gatehouse.invalid." || soa.Minttl != 60 {
				t.Fatalf("%s: SOA %v", netw, r.Ns[0])
			}
			if got := edeCode(r); tc.edns && got != int(mdns.ExtendedErrorCodeBlocked) || !tc.edns && (got != -1 || r.IsEdns0() != nil) {
				t.Fatalf("%s %s: EDE %d, OPT %v", netw, tc.name, got, r.IsEdns0())
			}
		}
	}
	if _, ok := appendName(nil, `a\.b.example.`); ok {
		t.Fatal("escaped name taken by the fast path")
	}
	if b, ok := appendName(nil, "Ab.c."); !ok || string(b) != "\x02Ab\x01c\x00" {
		t.Fatalf("appendName: %q", b)
	}
}

// TestFollowUpKeepsFields: the compact pending entry rebuilds the
// follow-up event with every field of the first (entry inside or outside
// the name), the first repeat's time and the highest severity.
func TestFollowUpKeepsFields(t *testing.T) {
	sk := &sink{}
	e := newEvents(sk, 100, time.Hour, newMetrics(nil, nil, nil), slog.New(slog.DiscardHandler))
	t0 := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	base := reports.Event{Time: t0, Source: "dns", Protocol: "udp", Client: netip.MustParseAddr(student), Device: "pc-7",
		User: "amy", Group: "students", Name: "www.porn.example", QType: "A", Action: "block", Reason: "category",
		Category: "pornography", Severity: bl.SeverityMedium, Route: bl.RouteDSL, List: "l1", Entry: "porn.example", Count: 1}
	other := base
	other.Name, other.Entry = "cdn.example", "tracker.example" // a CNAME target, not a suffix
	e.record(base)
	e.record(other)
	for i := range 3 {
		r, o := base, other
		r.Time, o.Time = t0.Add(time.Duration(i+1)*time.Second), t0.Add(time.Duration(i+1)*time.Second)
		if i == 1 {
			r.Severity = bl.SeverityHigh
		}
		e.record(r)
		e.record(o)
	}
	e.close()
	evs := sk.events()
	if len(evs) != 4 {
		t.Fatalf("want 2 firsts and 2 follow-ups, got %+v", evs)
	}
	for _, ev := range evs[2:] {
		want := base
		if ev.Name == other.Name {
			want = other
		} else {
			want.Severity = bl.SeverityHigh
		}
		want.Time, want.Count = t0.Add(time.Second), 3
		if ev != want {
			t.Fatalf("follow-up\n got %+v\nwant %+v", ev, want)
		}
	}
}

// TestUserFromProxyLogin: a user known for an address (the proxy's logins)
// puts that address's queries in the user's group, and the events name the
// user; other addresses are unaffected.
func TestUserFromProxyLogin(t *testing.T) {
	amyAt := netip.MustParseAddr(staff)
	ts := startServer(t, func(o *Options) {
		o.UserFor = func(ip netip.Addr) string {
			if ip == amyAt {
				return "amy"
			}
			return ""
		}
	})
	// staff's group allows gambling; amy is a student.
	if r := ask(t, "udp", ts.udp, staff, "gamble.example.", mdns.TypeA, true); r.Rcode != mdns.RcodeNameError {
		t.Fatalf("amy's query not decided by her group: %v", r)
	}
	ev := waitEvents(t, ts, 1)[0]
	if ev.User != "amy" || ev.Group != "students" || ev.Category != "gambling" {
		t.Fatalf("event: %+v", ev)
	}
	if r := ask(t, "udp", ts.udp, student, "porn.example.", mdns.TypeA, true); r.Rcode != mdns.RcodeNameError {
		t.Fatalf("student: %v", r)
	}
	if ev := waitEvents(t, ts, 2)[1]; ev.User != "" {
		t.Fatalf("user leaked to another address: %+v", ev)
	}
}

// TestUserForNil: without UserFor a staff address is decided by its network.
func TestUserForNil(t *testing.T) {
	ts := startServer(t, nil)
	if r := ask(t, "udp", ts.udp, staff, "gamble.example.", mdns.TypeA, true); r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("staff: %v", r)
	}
}

// TestGroupUpstreams: a group with its own upstreams is resolved (and
// cached) apart from the others, through the front door and LookupNetIP.
func TestGroupUpstreams(t *testing.T) {
	family := startUpstream(t, "198.51.100.7")
	ts := startServer(t, func(o *Options) {
		if err := o.Upstreams.AddGroup("students", []UpstreamSpec{{Addr: family.addr}}); err != nil {
			t.Fatal(err)
		}
	})
	for range 2 {
		if a := firstA(ask(t, "udp", ts.udp, staff, "www.example.org", mdns.TypeA, true)); a != "192.0.2.1" {
			t.Fatalf("staff answered %s, want the default upstream's", a)
		}
		if a := firstA(ask(t, "udp", ts.udp, student, "www.example.org", mdns.TypeA, true)); a != "198.51.100.7" {
			t.Fatalf("student answered %s, want the group's upstream's", a)
		}
	}
	if ts.up.count("www.example.org.") != 1 || family.count("www.example.org.") != 1 {
		t.Fatalf("each upstream should be asked once (then cached): default %d, group %d",
			ts.up.count("www.example.org."), family.count("www.example.org."))
	}
	addrs, err := ts.LookupNetIP(context.Background(), netip.MustParseAddr(student), "other.example.org")
	if err != nil || !slices.Contains(addrs, netip.MustParseAddr("198.51.100.7")) || slices.Contains(addrs, netip.MustParseAddr("192.0.2.1")) {
		t.Fatalf("LookupNetIP for a student: %v %v", addrs, err)
	}
	if err := ts.ups.AddGroup("students", []UpstreamSpec{{Addr: family.addr}}); err == nil {
		t.Fatal("a group's upstreams given twice were accepted")
	}
}

// TestTruncatedCachedAnswerAgesTTLs: a cached answer too big for the
// client's UDP size goes out truncated through the slow path, with its TTLs
// aged like any cache hit, not as stored.
func TestTruncatedCachedAnswerAgesTTLs(t *testing.T) {
	ts := startServer(t, nil)
	ask(t, "tcp", ts.tcp, staff, "big.example", mdns.TypeTXT, true) // cached, TTL 300
	ts.clock.advance(100 * time.Second)
	r := ask(t, "udp", ts.udp, staff, "big.example", mdns.TypeTXT, true)
	if !r.Truncated || len(r.Answer) == 0 {
		t.Fatalf("want a truncated answer with records: tc=%v answers=%d", r.Truncated, len(r.Answer))
	}
	for _, rr := range r.Answer {
		if ttl := rr.Header().Ttl; ttl > 200 {
			t.Fatalf("TTL %d after 100 s of a 300 s answer: not aged", ttl)
		}
	}
}

// refusingSink is a store whose writer queue is full.
type refusingSink struct{}

func (refusingSink) Record(reports.Event) bool { return false }

// An event the sink refuses is counted as dropped, not as queued.
func TestEventsRefusedBySinkCountAsDropped(t *testing.T) {
	m := newMetrics(nil, nil, nil)
	e := newEvents(refusingSink{}, 100, time.Hour, m, slog.New(slog.DiscardHandler))
	e.record(reports.Event{Client: netip.MustParseAddr(student), Name: "a.example", Action: "block", Severity: bl.SeverityLow})
	e.close()
	if q, d := counterValue(m.eventsQueued), counterValue(m.eventsDropped); q != 0 || d != 1 {
		t.Fatalf("queued %v, dropped %v; want 0 and 1", q, d)
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// SetAccess changes the ACL and the rate limit of a running server: the
// next query is decided by them (a config reload calls it).
func TestSetAccess(t *testing.T) {
	ts := startServer(t, nil)
	q := func(src string) int {
		return ask(t, "udp", ts.udp, src, "www.example.org", mdns.TypeA, false).Rcode
	}
	if rc := q("127.0.0.3"); rc != mdns.RcodeSuccess {
		t.Fatalf("default ACL: %s", mdns.RcodeToString[rc])
	}
	ts.SetAccess([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, 0, 0)
	if rc := q("127.0.0.3"); rc != mdns.RcodeRefused {
		t.Fatalf("outside the new ACL: %s", mdns.RcodeToString[rc])
	}
	ts.SetAccess(nil, 50, 50) // the default ACL again, and a limit (the clock is frozen)
	refused := 0
	for range 80 {
		if q("127.0.0.3") == mdns.RcodeRefused {
			refused++
		}
	}
	if refused < 20 {
		t.Fatalf("refused %d of 80 under a new limit with burst 50", refused)
	}
	ts.SetAccess(nil, 50, 50) // unchanged limit: the client's empty bucket stays
	if rc := q("127.0.0.3"); rc != mdns.RcodeRefused {
		t.Fatalf("same limit set again: %s (bucket refilled)", mdns.RcodeToString[rc])
	}
	ts.SetAccess(nil, 0, 0)
	if rc := q("127.0.0.3"); rc != mdns.RcodeSuccess {
		t.Fatalf("limit removed: %s", mdns.RcodeToString[rc])
	}
}

// TestBypassCapabilityKeysBounded: "bypass capability" events are one per
// client and category a day, remembered per client address; made-up
// source addresses (a UDP query's can be any) must not grow that memory
// without limit, and none of their events may go missing for it.
func TestBypassCapabilityKeysBounded(t *testing.T) {
	e := newEvents(&sink{}, 100, time.Hour, newMetrics(nil, nil, nil), slog.New(slog.DiscardHandler))
	defer e.close()
	now := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	first := netip.MustParseAddr("fd00::1")
	if !e.firstToday(first, bl.PrivateRelay, now) {
		t.Fatal("the first client's first event was not the first")
	}
	base := netip.MustParseAddr("fd00:1::").As16()
	for i := range maxCaps + 1000 {
		a := base
		a[12], a[13], a[14], a[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		if !e.firstToday(netip.AddrFrom16(a), bl.PrivateRelay, now) {
			t.Fatalf("client %d's first event today was not sent", i)
		}
	}
	e.capMu.Lock()
	n := len(e.caps)
	e.capMu.Unlock()
	if n > maxCaps {
		t.Fatalf("%d keys remembered, want at most %d", n, maxCaps)
	}
	// Tomorrow every client's first event goes again, and yesterday's
	// keys make room.
	if !e.firstToday(first, bl.PrivateRelay, now.Add(24*time.Hour)) {
		t.Fatal("tomorrow's first event was not the first")
	}
}

// TestTCPConnsBounded: DNS over TCP holds a goroutine and buffers per
// connection for as long as the client keeps asking; one address cannot
// hold more than its share open, and another is still answered.
func TestTCPConnsBounded(t *testing.T) {
	ts := startServer(t, nil)
	dial := func(from string) *mdns.Conn {
		t.Helper()
		c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}).Dial("tcp", ts.tcp)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return &mdns.Conn{Conn: c}
	}
	exchange := func(c *mdns.Conn) (*mdns.Msg, error) {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		m := new(mdns.Msg)
		m.SetQuestion("www.example.org.", mdns.TypeA)
		if err := c.WriteMsg(m); err != nil {
			return nil, err
		}
		return c.ReadMsg()
	}
	for i := range tcpMaxConnsPerAddr {
		if r, err := exchange(dial(student)); err != nil || firstA(r) != "192.0.2.1" {
			t.Fatalf("connection %d from one address: %v %v", i+1, r, err)
		}
	}
	if r, err := exchange(dial(student)); err == nil {
		t.Fatalf("connection %d from one address was answered: %v", tcpMaxConnsPerAddr+1, r)
	}
	r := ask(t, "tcp", ts.tcp, "127.0.0.9", "www.example.org", mdns.TypeA, false)
	if firstA(r) != "192.0.2.1" {
		t.Fatalf("another address while the first holds its share: %v", r)
	}
}

// TestSafeSearchThroughCNAME: a name that is an alias of a search engine's
// name (a pupil's own domain CNAMEd to www.google.com) does not carry the
// search engine's own addresses to a group with safe search on, from the
// upstream or from the cache filled by a group without it: the chain stops
// at the search engine's name, which is answered as a query for it would
// be (a CNAME to the safe endpoint and its addresses). Else the device's
// resolver cache would hold www.google.com's unsafe address for the
// browser's next lookup.
func TestSafeSearchThroughCNAME(t *testing.T) {
	ts := startServer(t, nil)
	check := func(who string, qtype uint16) {
		t.Helper()
		r := ask(t, "udp", ts.udp, student, "google-alias.example", qtype, true)
		if r.Rcode != mdns.RcodeSuccess {
			t.Fatalf("%s: %v", who, r)
		}
		safe, addrs := false, 0
		for _, rr := range r.Answer {
			switch v := rr.(type) {
			case *mdns.CNAME:
				if v.Hdr.Name == "www.google.com." && v.Target == "forcesafesearch.google.com." {
					safe = true
				}
			case *mdns.A:
				addrs++
				if v.Hdr.Name != "forcesafesearch.google.com." {
					t.Fatalf("%s: an address for %s reached a safe-search group: %v", who, v.Hdr.Name, r)
				}
			case *mdns.AAAA:
				addrs++
				if v.Hdr.Name != "forcesafesearch.google.com." {
					t.Fatalf("%s: an address for %s reached a safe-search group: %v", who, v.Hdr.Name, r)
				}
			}
		}
		if !safe || addrs == 0 {
			t.Fatalf("%s: want the chain on to the safe endpoint and its address: %v", who, r)
		}
	}
	check("from the upstream", mdns.TypeA)
	// Staff (safe search off) get the chain as it is, and the cache keeps it.
	r := ask(t, "udp", ts.udp, staff, "google-alias.example", mdns.TypeAAAA, true)
	if len(r.Answer) != 2 || r.Answer[1].Header().Name != "www.google.com." {
		t.Fatalf("staff: %v", r)
	}
	check("from the cache", mdns.TypeAAAA)
}

// TestBlockedNameInRecords: an answer that names a blocked name other than
// by a CNAME (an HTTPS record's target, with that name's addresses in the
// additional section, or a record of it the answer just carries) is blocked
// as a CNAME to it is: else the device's resolver would keep the blocked
// name's address for its next lookup of it. Over UDP and from the cache.
func TestBlockedNameInRecords(t *testing.T) {
	ts := startServer(t, nil)
	for _, c := range []struct {
		name  string
		qtype uint16
	}{{"svcporn.example", mdns.TypeHTTPS}, {"extraporn.example", mdns.TypeA}} {
		for _, from := range []string{"upstream", "cache"} {
			r := ask(t, "udp", ts.udp, student, c.name, c.qtype, true)
			for _, sec := range [][]mdns.RR{r.Answer, r.Ns, r.Extra} {
				for _, rr := range sec {
					if strings.Contains(rr.String(), ".porn.example.") { // edge. and www.
						t.Fatalf("%s from the %s: a blocked name's record reached the client: %v", c.name, from, r)
					}
				}
			}
			if r.Rcode != mdns.RcodeNameError {
				t.Fatalf("%s from the %s: want the block answer (NXDOMAIN): %v", c.name, from, r)
			}
		}
	}
	if r := ask(t, "udp", ts.udp, student, "svcextra.example", mdns.TypeHTTPS, true); r.Rcode != mdns.RcodeSuccess || len(r.Extra) < 2 {
		t.Fatalf("an allowed target's additional addresses: %v", r)
	}
}
