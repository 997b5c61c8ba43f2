package dns

import (
	"context"
	"encoding/base32"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/gatehouse-filter/gatehouse/bench/benchdata"
	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// tunnelNames makes n names as iodine sends them: random bytes base32
// encoded into a 60-character label and a shorter one, under t.<domain>.
func tunnelNames(seed uint64, n int, domain string) []string {
	r := rand.New(rand.NewPCG(seed, 1))
	enc := base32.StdEncoding.WithPadding(base32.NoPadding)
	out := make([]string, n)
	for i := range out {
		b := make([]byte, 50)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		s := strings.ToLower(enc.EncodeToString(b)) // 80 characters
		out[i] = s[:60] + "." + s[60:] + ".t." + domain
	}
	return out
}

// tunnelTypes are the types iodine tries, in turn.
var tunnelTypes = []uint16{mdns.TypeNULL, mdns.TypeTXT, mdns.TypeA}

// tunnelEvents is the sink's dns-tunnel events.
func tunnelEvents(ts *testServer) []reports.Event {
	var out []reports.Event
	for _, e := range ts.sink.events() {
		if e.Reason == tunnelReason {
			out = append(out, e)
		}
	}
	return out
}

// upstreamHits counts the test upstream's queries for names under domain.
func upstreamHits(u *testUpstream, domain string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for name, c := range u.hits {
		if under(strings.TrimSuffix(name, "."), domain) {
			n += c
		}
	}
	return n
}

func shutdown(ts *testServer) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	ts.Shutdown(ctx)
}

// TestTunnelDetectedAndBlocked: iodine-like traffic is a tunnel at the
// threshold; one event says so (a bypass attempt, vpn, routed to the DSL);
// then every query of that client under the domain (a plain name, a cached
// one, over UDP and TCP) gets the block answer and reaches no upstream,
// while another client still resolves the domain, and the block ends after
// block_for.
func TestTunnelDetectedAndBlocked(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.Collapse = time.Minute }) // repeats stay pending until Shutdown
	names := tunnelNames(1, 40, "tunnel.test")
	// Before the tunnel: an ordinary name under the domain, cached.
	if r := ask(t, "udp", ts.udp, student, "cached.tunnel.test", mdns.TypeA, true); r.Rcode != mdns.RcodeSuccess || firstA(r) != "192.0.2.1" {
		t.Fatalf("cached.tunnel.test: %v", r)
	}
	for i := range 29 {
		r := ask(t, "udp", ts.udp, student, names[i], tunnelTypes[i%3], true)
		if r.Rcode != mdns.RcodeSuccess {
			t.Fatalf("name %d before the threshold: %v", i, r)
		}
	}
	// A name asked again is not counted twice.
	ask(t, "udp", ts.udp, student, names[0], mdns.TypeTXT, true)
	if evs := tunnelEvents(ts); len(evs) != 0 {
		t.Fatalf("events before the threshold: %+v", evs)
	}
	before := upstreamHits(ts.up, "tunnel.test")
	if before != 31 {
		t.Fatalf("upstream saw %d queries under tunnel.test, want 31", before)
	}

	// The 30th distinct name is the tunnel: blocked, and reported once.
	r := ask(t, "udp", ts.udp, student, names[29], mdns.TypeNULL, true)
	if r.Rcode != mdns.RcodeNameError || edeCode(r) != int(mdns.ExtendedErrorCodeBlocked) {
		t.Fatalf("the 30th name: %v", r)
	}
	evs := waitEvents(t, ts, 1)
	e := evs[0]
	if e.Reason != "dns-tunnel" || !e.Bypass || e.Category != "vpn" || e.Severity != bl.SeverityHigh ||
		e.Route != bl.RouteDSL || e.Name != "tunnel.test" || e.Entry != "tunnel.test" || e.Action != "block" ||
		e.Client != netip.MustParseAddr(student) || e.Group != "students" || e.Count != 1 || e.QType != "" {
		t.Fatalf("detection event: %+v", e)
	}

	// Every later query of the client under tunnel.test: blocked, whatever
	// its type, name or transport, the cached name too.
	later := 0
	for i, n := range names[30:] {
		netw, addr := "udp", ts.udp
		if i%2 == 1 {
			netw, addr = "tcp", ts.tcp
		}
		if r := ask(t, netw, addr, student, n, tunnelTypes[i%3], true); r.Rcode != mdns.RcodeNameError {
			t.Fatalf("%s tunnel name after detection: %v", netw, r)
		}
		later++
	}
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"www.tunnel.test", mdns.TypeA}, {"cached.tunnel.test", mdns.TypeA}, {"tunnel.test", mdns.TypeMX}, {"x.tunnel.test", mdns.TypeSRV}} {
		if r := ask(t, "udp", ts.udp, student, q.name, q.qtype, true); r.Rcode != mdns.RcodeNameError || edeCode(r) != 15 {
			t.Fatalf("%s after detection: %v", q.name, r)
		}
		later++
	}
	if n := upstreamHits(ts.up, "tunnel.test"); n != before {
		t.Fatalf("upstream saw %d more queries under tunnel.test after the detection", n-before)
	}
	// Other names of the client still resolve.
	if r := ask(t, "udp", ts.udp, student, "www.example.org", mdns.TypeA, true); r.Rcode != mdns.RcodeSuccess {
		t.Fatalf("other name: %v", r)
	}
	// Another client is not affected.
	if r := ask(t, "udp", ts.udp, staff, "www.tunnel.test", mdns.TypeA, true); r.Rcode != mdns.RcodeSuccess || firstA(r) != "192.0.2.1" {
		t.Fatalf("another client: %v", r)
	}
	if ts.tunnel.nblocks.Load() != 1 || counterValue(ts.tunnel.detections) != 1 {
		t.Fatalf("blocks %d, detections %v", ts.tunnel.nblocks.Load(), counterValue(ts.tunnel.detections))
	}
	if n := len(tunnelEvents(ts)); n != 1 {
		t.Fatalf("%d dns-tunnel events before the window ends, want 1 (repeats are collapsed)", n)
	}

	// After block_for the client resolves the domain again.
	ts.clock.advance(time.Hour)
	if r := ask(t, "udp", ts.udp, student, "www.tunnel.test", mdns.TypeA, true); r.Rcode != mdns.RcodeSuccess {
		t.Fatalf("after block_for: %v", r)
	}
	if ts.tunnel.nblocks.Load() != 0 || ts.tunnel.blocks.Load() != nil {
		t.Fatal("the ended block is still active")
	}

	// The blocked queries were counted as repeats of the detection: one
	// follow-up with their count.
	shutdown(ts)
	evs = tunnelEvents(ts)
	if len(evs) != 2 || evs[1].Count != later || evs[1].Name != "tunnel.test" || !evs[1].Bypass {
		t.Fatalf("events after shutdown (want the detection and one follow-up counting %d): %+v", later, evs)
	}
}

// TestTunnelFlagAndOff: action flag records the detection and blocks
// nothing; off does neither.
func TestTunnelFlagAndOff(t *testing.T) {
	for _, action := range []string{TunnelFlag, TunnelOff} {
		t.Run(action, func(t *testing.T) {
			ts := startServer(t, func(o *Options) { o.Tunnel.Action = action })
			names := tunnelNames(2, 70, "tunnel.test")
			for i, n := range names {
				if r := ask(t, "udp", ts.udp, student, n, tunnelTypes[i%3], true); r.Rcode != mdns.RcodeSuccess {
					t.Fatalf("name %d: %v", i, r)
				}
			}
			if r := ask(t, "udp", ts.udp, student, "www.tunnel.test", mdns.TypeA, true); r.Rcode != mdns.RcodeSuccess {
				t.Fatalf("plain name: %v", r)
			}
			if n := upstreamHits(ts.up, "tunnel.test"); n != len(names)+1 {
				t.Fatalf("upstream saw %d, want %d", n, len(names)+1)
			}
			shutdown(ts)
			evs := tunnelEvents(ts)
			if action == TunnelOff {
				if len(evs) != 0 || counterValue(ts.tunnel.detections) != 0 {
					t.Fatalf("off: events %+v", evs)
				}
				return
			}
			// One report per window, however many names follow.
			if len(evs) != 1 || evs[0].Action != "flag" || !evs[0].Bypass || evs[0].Category != "vpn" ||
				evs[0].Route != bl.RouteDSL || evs[0].Name != "tunnel.test" || evs[0].Count != 1 {
				t.Fatalf("flag: events %+v", evs)
			}
			if ts.tunnel.nblocks.Load() != 0 {
				t.Fatal("flag blocked")
			}
		})
	}
}

// TestTunnelWindow: names spread over more than one window are not a
// tunnel.
func TestTunnelWindow(t *testing.T) {
	ts := startServer(t, nil)
	names := tunnelNames(3, 58, "tunnel.test")
	for i, n := range names {
		if i == 29 {
			ts.clock.advance(61 * time.Second)
		}
		if r := ask(t, "udp", ts.udp, student, n, mdns.TypeTXT, true); r.Rcode != mdns.RcodeSuccess {
			t.Fatalf("name %d: %v", i, r)
		}
	}
	if counterValue(ts.tunnel.detections) != 0 {
		t.Fatal("29 names in each of two windows made a tunnel")
	}
}

// TestTunnelUmbrellaTop: the most popular names (the Cisco Umbrella list,
// a real DNS query mix with long CDN and cloud names), all asked by one
// client within one window, are no tunnel.
func TestTunnelUmbrellaTop(t *testing.T) {
	names := umbrellaTop(t, 20_000)
	ts := startServer(t, nil)
	c := &mdns.Client{Net: "udp", Timeout: 10 * time.Second, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(student)}}}
	conn, err := c.Dial(ts.udp)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tunnelLike := 0
	for i, n := range names {
		if ts.tunnel.tunnelLike(n, mdns.TypeA) != "" {
			tunnelLike++
		}
		m := new(mdns.Msg)
		m.SetQuestion(mdns.Fqdn(n), mdns.TypeA)
		if _, _, err := c.ExchangeWithConn(m, conn); err != nil {
			t.Fatalf("name %d %s: %v", i, n, err)
		}
	}
	if evs := tunnelEvents(ts); len(evs) != 0 || counterValue(ts.tunnel.detections) != 0 {
		t.Fatalf("tunnel events for the Umbrella top names: %+v", evs)
	}
	t.Logf("%d of %d names tunnel-like (not allowed), no tunnel", tunnelLike, len(names))
}

// umbrellaTop is the first n names of the Umbrella top list in
// ../shared/data (not in the repository; the test is skipped without it).
func umbrellaTop(t *testing.T, n int) []string {
	if _, ok := benchdata.SharedData(); !ok {
		t.Skip("shared/data/blocklists not found")
	}
	names, err := benchdata.Popular()
	if err != nil {
		t.Fatal(err)
	}
	return names[:min(n, len(names))]
}

// TestTunnelAllowList: anti-virus lookups over DNS (Sophos: a file's hash
// in the name) are never counted, nor a domain in Options.Tunnel.Allow.
func TestTunnelAllowList(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.Tunnel.Allow = []string{"Tunnel.Test"} })
	r := rand.New(rand.NewPCG(4, 1))
	enc := base32.StdEncoding.WithPadding(base32.NoPadding)
	for i := range 60 {
		b := make([]byte, 16)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		n := "0.0.0.0.1.0.0.4e." + strings.ToLower(enc.EncodeToString(b)) + ".ih.sophosxl.net"
		if i == 0 && ts.tunnel.tunnelLike("0.0.0.0.1.0.0.4e.13cj7qqc7dp3nfeb9ddxvupeek.ih.sophosxl.net", mdns.TypeA) != "" {
			t.Fatal("the Sophos name is counted")
		}
		if r := ask(t, "udp", ts.udp, student, n, mdns.TypeA, true); r.Rcode != mdns.RcodeSuccess {
			t.Fatalf("%s: %v", n, r)
		}
	}
	for i, n := range tunnelNames(5, 40, "tunnel.test") {
		if r := ask(t, "udp", ts.udp, student, n, tunnelTypes[i%3], true); r.Rcode != mdns.RcodeSuccess {
			t.Fatalf("allowed tunnel.test: %v", r)
		}
	}
	ts.tunnel.mu.Lock()
	n := len(ts.tunnel.clients)
	ts.tunnel.mu.Unlock()
	if counterValue(ts.tunnel.detections) != 0 || n != 0 {
		t.Fatalf("allowed names were counted (%d clients)", n)
	}
}

// TestTunnelUnderReverseZone: a tunnel broker's IPv6 /48 comes with its
// ip6.arpa zone delegated to the holder's name servers, so iodine can run
// under it; reverse lookups (nibble names, and the DNS-SD browsing names
// asked with them) are still never counted.
func TestTunnelUnderReverseZone(t *testing.T) {
	ts := startServer(t, nil)
	for i := range 40 {
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)})
		rev, _ := mdns.ReverseAddr(a.String())
		for _, n := range []string{rev, "b._dns-sd._udp." + rev, "lb._dns-sd._udp." + rev} {
			if r := ask(t, "udp", ts.udp, student, n, mdns.TypePTR, true); r.Rcode != mdns.RcodeSuccess {
				t.Fatalf("reverse lookup %s: %v", n, r)
			}
		}
		if r := ask(t, "udp", ts.udp, student, fmt.Sprintf("%d.0/25.2.0.192.in-addr.arpa", i), mdns.TypeNULL, true); r.Rcode != mdns.RcodeSuccess {
			t.Fatalf("classless reverse lookup %d: %v", i, r)
		}
	}
	ts.tunnel.mu.Lock()
	n := len(ts.tunnel.clients)
	ts.tunnel.mu.Unlock()
	if n != 0 || len(tunnelEvents(ts)) != 0 {
		t.Fatalf("reverse lookups were counted (%d clients, events %+v)", n, tunnelEvents(ts))
	}

	zone := "0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa" // the pupil's delegated /48
	names := tunnelNames(7, 30, zone)
	for i, n := range names[:29] {
		if r := ask(t, "udp", ts.udp, student, n, tunnelTypes[i%3], true); r.Rcode != mdns.RcodeSuccess {
			t.Fatalf("name %d before the threshold: %v", i, r)
		}
	}
	if r := ask(t, "udp", ts.udp, student, names[29], mdns.TypeNULL, true); r.Rcode != mdns.RcodeNameError || edeCode(r) != 15 {
		t.Fatalf("the 30th name under %s: %v", zone, r)
	}
	evs := waitEvents(t, ts, 1)
	if evs[0].Reason != tunnelReason || evs[0].Name != "2.ip6.arpa" || evs[0].Category != "vpn" {
		t.Fatalf("detection event: %+v", evs[0])
	}
}

// TestTunnelLike: the rule for one name.
func TestTunnelLike(t *testing.T) {
	tu := newTunnels(TunnelOptions{}, nil)
	long := strings.Repeat("a", 40)
	for _, c := range []struct {
		name  string
		qtype uint16
		want  string
	}{
		{"www.example.org", mdns.TypeA, ""},
		{"www.example.org", mdns.TypeNULL, "example.org"},
		{"x.example.org", 65400, "example.org"},
		{"example.org", mdns.TypeNULL, ""}, // no subdomain
		{long + ".example.org", mdns.TypeA, "example.org"},
		{long[:39] + ".example.org", mdns.TypeA, ""},
		{strings.Repeat("abcdefghi.", 5) + "example.co.uk", mdns.TypeTXT, "example.co.uk"}, // 50 left of it
		{strings.Repeat("abcdefgh.", 5) + "example.co.uk", mdns.TypeTXT, ""},               // 45
		{"8.7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.3.0.0.2.0.8.4.0.6.8.4.1.0.0.2.ip6.arpa", mdns.TypePTR, ""},
		{"0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", mdns.TypeNULL, ""},
		{"b._dns-sd._udp.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", mdns.TypePTR, ""},
		{"lb._dns-sd._udp.0.2.0.192.in-addr.arpa", mdns.TypeNULL, ""},
		{"1.2.0.192.in-addr.arpa", mdns.TypeNULL, ""},
		{"1.0/25.2.0.192.in-addr.arpa", mdns.TypeNULL, ""}, // RFC 2317
		{"1.0-127.2.0.192.in-addr.arpa", mdns.TypeNULL, ""},
		{"0-127.2.0.192.in-addr.arpa", mdns.TypeNULL, ""},
		// Anything else under .arpa: a delegated reverse zone can carry a
		// tunnel (the public suffix list makes 2.ip6.arpa the domain).
		{long + ".t.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", mdns.TypeA, "2.ip6.arpa"},
		{"x.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", mdns.TypeNULL, "2.ip6.arpa"},
		{"10.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", mdns.TypeNULL, "2.ip6.arpa"},
		{strings.Repeat("0.", 33) + "ip6.arpa", mdns.TypeNULL, "0.ip6.arpa"},
		{"x.2.0.192.in-addr.arpa", mdns.TypeNULL, "192.in-addr.arpa"},
		{"256.2.0.192.in-addr.arpa", mdns.TypeNULL, "192.in-addr.arpa"},
		{"1.1.2.0.192.in-addr.arpa", mdns.TypeNULL, "192.in-addr.arpa"},
		{"0/25.1.2.0.192.in-addr.arpa", mdns.TypeNULL, "192.in-addr.arpa"}, // classless label out of place
		{"x._dns-sd._udp.0.2.0.192.in-addr.arpa", mdns.TypeNULL, "192.in-addr.arpa"},
		{"x.tunnel.arpa", mdns.TypeNULL, "tunnel.arpa"},
		{long + ".spamhaus.org", mdns.TypeA, ""},
		{long + ".zen.spamhaus.org", mdns.TypeNULL, ""},
	} {
		if got := tu.tunnelLike(c.name, c.qtype); got != c.want {
			t.Errorf("tunnelLike(%s, %d) = %q, want %q", c.name, c.qtype, got, c.want)
		}
	}
}

// TestTunnelBounds: past the client cap the map keeps to it and counts the
// clients it could not track; once their windows end, they are swept for
// new ones. A client's domains keep to their cap too.
func TestTunnelBounds(t *testing.T) {
	ts := startServer(t, nil)
	extra := 50
	for i := range tunnelMaxClients + extra {
		from := netip.AddrFrom4([4]byte{127, 1, byte(i >> 8), byte(i)}).String()
		if r := ask(t, "udp", ts.udp, from, fmt.Sprintf("c%d.tunnel.test", i), mdns.TypeNULL, false); r.Rcode != mdns.RcodeSuccess {
			t.Fatalf("client %d: %v", i, r)
		}
	}
	ts.tunnel.mu.Lock()
	n := len(ts.tunnel.clients)
	ts.tunnel.mu.Unlock()
	if n != tunnelMaxClients || counterValue(ts.tunnel.untracked) != float64(extra) {
		t.Fatalf("%d clients tracked (cap %d), %v untracked", n, tunnelMaxClients, counterValue(ts.tunnel.untracked))
	}
	// A window later the idle clients are swept for a new one.
	ts.clock.advance(61 * time.Second)
	ask(t, "udp", ts.udp, "127.2.0.1", "x.tunnel.test", mdns.TypeNULL, false)
	ts.tunnel.mu.Lock()
	n = len(ts.tunnel.clients)
	_, tracked := ts.tunnel.clients[netip.MustParseAddr("127.2.0.1")]
	ts.tunnel.mu.Unlock()
	if n != 1 || !tracked {
		t.Fatalf("after the sweep: %d clients, new one tracked %v", n, tracked)
	}
	// One client, more domains than the cap.
	for i := range tunnelMaxDomains + 8 {
		ask(t, "udp", ts.udp, student, fmt.Sprintf("x.d%d.test", i), mdns.TypeNULL, false)
	}
	ts.tunnel.mu.Lock()
	doms := len(ts.tunnel.clients[netip.MustParseAddr(student)].doms)
	ts.tunnel.mu.Unlock()
	if doms != tunnelMaxDomains {
		t.Fatalf("%d domains for one client, cap %d", doms, tunnelMaxDomains)
	}
}

// TestTunnelBlocksBounded: blocks from ever new addresses stay within
// tunnelMaxBlocks; the one that ends first makes room, the newest holds.
func TestTunnelBlocksBounded(t *testing.T) {
	tn := newTunnels(TunnelOptions{}, nil)
	now := int64(1_000_000)
	tn.mu.Lock()
	for i := range tunnelMaxBlocks + 10 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		tn.addBlockLocked(a, "tunnel.test", now+int64(time.Hour)+int64(i), now)
	}
	tn.mu.Unlock()
	if n := tn.nblocks.Load(); n != tunnelMaxBlocks {
		t.Fatalf("%d blocks in force, cap %d", n, tunnelMaxBlocks)
	}
	if _, ok := tn.blocked(netip.AddrFrom4([4]byte{10, 0, 0, 0}), "a.tunnel.test", now); ok {
		t.Error("the block ending first was kept past the cap")
	}
	last := tunnelMaxBlocks + 9
	if _, ok := tn.blocked(netip.AddrFrom4([4]byte{10, byte(last >> 16), byte(last >> 8), byte(last)}), "a.tunnel.test", now); !ok {
		t.Error("the newest block was dropped")
	}
}
