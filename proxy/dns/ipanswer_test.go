package dns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	mdns "github.com/miekg/dns"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/policy"
)

// ipListConfig adds an IP list (the test upstream answers every A query
// with 192.0.2.1) that students block as DoH.
const ipListConfig = `
  - name: doh-ips
    path: {{dir}}/doh-ips.txt
    category: doh
    format: ips
`

// ipEngine is testEngine's config with the IP list, and an allow entry
// for allowed.example for students.
func ipEngine(t testing.TB) *policy.Engine {
	t.Helper()
	return ipEngineWith(t, "192.0.2.0/28\n")
}

// ipEngineWith is ipEngine with ips as the IP list's text.
func ipEngineWith(t testing.TB, ips string) *policy.Engine {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{"adult.txt": "porn.example\n", "gamble.txt": "gamble.example\n", "doh-ips.txt": ips}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	text := strings.Replace(testConfig, "lists:\n", "lists:"+ipListConfig, 1)
	text = strings.Replace(text, "    safe_search: strict\n", "    safe_search: strict\n    allow: [allowed.example]\n", 1)
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

func startIPServer(t testing.TB) *testServer {
	eng := ipEngine(t)
	return startServer(t, func(o *Options) { o.Engine = func() *policy.Engine { return eng } })
}

// TestAnswerAddressBlocked: an answer whose address is on an IP list the
// client's group blocks is answered as a blocked name, from the upstream
// and from the cache, with an event naming the name, address and list.
func TestAnswerAddressBlocked(t *testing.T) {
	ts := startIPServer(t)
	for i := range 2 { // miss, then cache hit
		r := ask(t, "udp", ts.udp, student, "doh.resolver.example", mdns.TypeA, true)
		if r.Rcode != mdns.RcodeNameError || edeCode(r) != 15 || len(r.Answer) != 0 {
			t.Fatalf("round %d: %v", i, r)
		}
	}
	evs := waitEvents(t, ts, 1)
	ev := evs[0]
	if ev.Name != "doh.resolver.example" || ev.Category != "doh" || ev.List != "doh-ips" ||
		ev.Entry != "192.0.2.1 in 192.0.2.0/28" || !ev.Bypass || ev.Action != "block" {
		t.Fatalf("event: %+v", ev)
	}
	// Staff do not block DoH; the AAAA answer (2001:db8::1) is not listed.
	if r := ask(t, "udp", ts.udp, staff, "doh.resolver.example", mdns.TypeA, true); firstA(r) != "192.0.2.1" {
		t.Errorf("staff: %v", r)
	}
	if r := ask(t, "udp", ts.udp, student, "doh.resolver.example", mdns.TypeAAAA, true); r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("AAAA: %v", r)
	}
	// A DNS64 answer carries the listed IPv4 address inside 64:ff9b::/96:
	// where the network has NAT64, that is where the pupil's connection goes.
	if r := ask(t, "udp", ts.udp, student, "dns64.resolver.example", mdns.TypeAAAA, true); r.Rcode != mdns.RcodeNameError || edeCode(r) != 15 || len(r.Answer) != 0 {
		t.Errorf("DNS64 AAAA: %v", r)
	}
	if r := ask(t, "udp", ts.udp, student, "dns64local.resolver.example", mdns.TypeAAAA, true); r.Rcode != mdns.RcodeNameError || edeCode(r) != 15 || len(r.Answer) != 0 {
		t.Errorf("local-use DNS64 AAAA: %v", r)
	}
	// A name on the group's allow list keeps its answer.
	if r := ask(t, "udp", ts.udp, student, "allowed.example", mdns.TypeA, true); firstA(r) != "192.0.2.1" {
		t.Errorf("allowed name: %v", r)
	}
	// Over TCP too (the other front door).
	if r := ask(t, "tcp", ts.tcp, student, "other.example", mdns.TypeA, false); r.Rcode != mdns.RcodeNameError {
		t.Errorf("tcp: %v", r)
	}
}

// TestAdditionalAddressBlocked: an HTTPS answer whose target's addresses
// arrive in the additional section is decided on them as on the answer's:
// a client may connect to them without asking for A or AAAA, so a listed
// address there blocks the answer as the name would be, from the upstream
// and from the cache; staff, who do not block DoH, get it.
func TestAdditionalAddressBlocked(t *testing.T) {
	ts := startIPServer(t)
	for i := range 2 { // miss, then cache hit
		r := ask(t, "udp", ts.udp, student, "svcextra.resolver.example", mdns.TypeHTTPS, true)
		if r.Rcode != mdns.RcodeNameError || edeCode(r) != 15 || len(r.Answer) != 0 || len(r.Extra) != 1 {
			t.Fatalf("round %d: %v", i, r)
		}
	}
	ev := waitEvents(t, ts, 1)[0]
	if ev.Name != "svcextra.resolver.example" || ev.List != "doh-ips" || ev.Entry != "192.0.2.1 in 192.0.2.0/28" || ev.Action != "block" {
		t.Fatalf("event: %+v", ev)
	}
	r := ask(t, "udp", ts.udp, staff, "svcextra.resolver.example", mdns.TypeHTTPS, true)
	if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 || len(r.Extra) != 3 {
		t.Errorf("staff: %v", r)
	}
}

// TestLookupNetIPBlocked: the proxy's lookups return a BlockedError with
// the decision for a listed address and for a blocked CNAME target.
func TestLookupNetIPBlocked(t *testing.T) {
	ts := startIPServer(t)
	ctx := context.Background()
	_, err := ts.LookupNetIP(ctx, netip.MustParseAddr(student), "doh.resolver.example")
	var be *policy.BlockedError
	if !errors.As(err, &be) || !errors.Is(err, ErrBlocked) || be.Addr.String() != "192.0.2.1" ||
		be.Decision.Action != policy.Block || be.Decision.List != "doh-ips" || be.Name != "doh.resolver.example" {
		t.Fatalf("listed address: %v %+v", err, be)
	}
	if addrs, err := ts.LookupNetIP(ctx, netip.MustParseAddr(staff), "doh.resolver.example"); err != nil || len(addrs) != 2 {
		t.Errorf("staff: %v %v", addrs, err)
	}
	if _, err := ts.LookupNetIP(ctx, netip.MustParseAddr(student), "allowed.example"); err != nil {
		t.Errorf("allowed name: %v", err)
	}
	_, err = ts.LookupNetIP(ctx, netip.MustParseAddr(staff), "cdn.example")
	if !errors.As(err, &be) || be.Target != "edge.porn.example" || be.Decision.Category != bl.Pornography || be.Decision.Entry != "porn.example" {
		t.Fatalf("CNAME target: %v %+v", err, be)
	}
	if evs := ts.sink.events(); len(evs) != 0 {
		t.Errorf("LookupNetIP recorded events: %+v", evs)
	}
}

// TestAnswerAddrs reads the addresses of a packed answer in batches.
func TestAnswerAddrs(t *testing.T) {
	m := new(mdns.Msg)
	m.SetQuestion("many.example.", mdns.TypeA)
	m.Response = true
	m.Answer = append(m.Answer, &mdns.CNAME{Hdr: mdns.RR_Header{Name: "many.example.", Rrtype: mdns.TypeCNAME, Class: mdns.ClassINET, Ttl: 60}, Target: "x.example."})
	var want []string
	for i := range 11 {
		a := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
		want = append(want, a.String())
		m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: "x.example.", Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60}, A: a.AsSlice()})
	}
	m.Answer = append(m.Answer, &mdns.AAAA{Hdr: mdns.RR_Header{Name: "x.example.", Rrtype: mdns.TypeAAAA, Class: mdns.ClassINET, Ttl: 60}, AAAA: netip.MustParseAddr("2001:db8::7").AsSlice()})
	want = append(want, "2001:db8::7")
	m.Ns = append(m.Ns, &mdns.A{Hdr: mdns.RR_Header{Name: "ns.example.", Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60}, A: []byte{203, 0, 113, 9}})
	// The additional section's addresses count (an HTTPS target's), the
	// authority section's glue does not.
	m.Extra = append(m.Extra, &mdns.A{Hdr: mdns.RR_Header{Name: "svc.example.", Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60}, A: []byte{203, 0, 113, 10}})
	want = append(want, "203.0.113.10")
	e, err := newEntry(m, 60, nil, 0)
	if err != nil || !e.addrs {
		t.Fatal(err, e.addrs)
	}
	var got []string
	var buf [5]netip.Addr
	for next, rounds := 0, 0; ; rounds++ {
		if rounds > 10 {
			t.Fatal("no progress")
		}
		var addrs []netip.Addr
		addrs, next = e.answerAddrs(buf[:0], next)
		for _, a := range addrs {
			got = append(got, a.String())
		}
		if next == 0 {
			break
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

// BenchmarkServeCachedIPLists is BenchmarkServeCached with an IP list
// loaded, so that every cached answer's addresses are checked.
func BenchmarkServeCachedIPLists(b *testing.B) {
	b.Run("listed", func(b *testing.B) {
		ts := startIPServer(b)
		benchQuery(b, ts, "www.example.org.", staff)
	})
	// The common case: an IP list is loaded and the answer's address is
	// on none (the upstream answers 192.0.2.1); with and without the
	// identity table of 50,000 addresses.
	for _, n := range []int{0, 50000} {
		b.Run(fmt.Sprintf("unlisted/identity=%d", n), func(b *testing.B) {
			eng := ipEngineWith(b, "198.51.100.0/24\n")
			ts := startServer(b, func(o *Options) {
				o.Engine = func() *policy.Engine { return eng }
				if n > 0 {
					withIdentity(n)(o)
				}
			})
			benchQuery(b, ts, "www.example.org.", student)
		})
	}
}

// TestAnswerAddressCleanPerEngine: a cache hit skips the address lookups
// once its answer was found on no list, but only under the engine that
// found it: a reload that lists the address blocks the cached answer at
// once, and an address one group allows is never remembered as unlisted.
func TestAnswerAddressCleanPerEngine(t *testing.T) {
	before := ipEngineWith(t, "198.51.100.0/24\n") // the answer, 192.0.2.1, is on no list
	after := ipEngineWith(t, "192.0.2.0/28\n")
	var cur atomic.Pointer[policy.Engine]
	cur.Store(before)
	ts := startServer(t, func(o *Options) { o.Engine = func() *policy.Engine { return cur.Load() } })
	for i := range 3 { // miss, then hits that find it remembered
		if r := ask(t, "udp", ts.udp, student, "doh.resolver.example", mdns.TypeA, true); firstA(r) != "192.0.2.1" {
			t.Fatalf("round %d before the reload: %v", i, r)
		}
	}
	cur.Store(after)
	// Staff allow DoH: their answer is listed, so not remembered as clean.
	for i := range 2 {
		if r := ask(t, "udp", ts.udp, staff, "doh.resolver.example", mdns.TypeA, true); firstA(r) != "192.0.2.1" {
			t.Fatalf("staff round %d: %v", i, r)
		}
	}
	if r := ask(t, "udp", ts.udp, student, "doh.resolver.example", mdns.TypeA, true); r.Rcode != mdns.RcodeNameError || edeCode(r) != 15 {
		t.Fatalf("cached answer after the reload listed its address: %v", r)
	}
	if evs := waitEvents(t, ts, 1); evs[0].Entry != "192.0.2.1 in 192.0.2.0/28" {
		t.Errorf("event: %+v", evs[0])
	}
	cur.Store(before)
	if r := ask(t, "udp", ts.udp, student, "doh.resolver.example", mdns.TypeA, true); firstA(r) != "192.0.2.1" {
		t.Fatalf("after a reload back: %v", r)
	}
}
