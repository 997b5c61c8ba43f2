package dns

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/gatehouse-filter/gatehouse/identity"
	"github.com/gatehouse-filter/gatehouse/internal/storetest"
	"github.com/gatehouse-filter/gatehouse/policy"
)

// fakeWriter is an in-memory ResponseWriter for benchmarks and fuzzing.
// It packs into a buffer of its own, as the UDP workers' writer does.
type fakeWriter struct {
	remote net.Addr
	n      int
	last   []byte
	pack   []byte
}

func (w *fakeWriter) LocalAddr() net.Addr  { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }
func (w *fakeWriter) RemoteAddr() net.Addr { return w.remote }
func (w *fakeWriter) WriteMsg(m *mdns.Msg) error {
	if w.pack == nil {
		w.pack = make([]byte, mdns.MaxMsgSize)
	}
	b, err := m.PackBuffer(w.pack)
	if err != nil {
		return err
	}
	return w.write(b)
}
func (w *fakeWriter) write(b []byte) error { w.n++; w.last = append(w.last[:0], b...); return nil }
func (w *fakeWriter) Write(b []byte) (int, error) {
	return len(b), w.write(b)
}
func (w *fakeWriter) Close() error        { return nil }
func (w *fakeWriter) TsigStatus() error   { return nil }
func (w *fakeWriter) TsigTimersOnly(bool) {}
func (w *fakeWriter) Hijack()             {}

func benchQuery(b *testing.B, ts *testServer, name string, from string) {
	w := &fakeWriter{remote: &net.UDPAddr{IP: net.ParseIP(from), Port: 40000}}
	m := new(mdns.Msg)
	m.SetQuestion(name, mdns.TypeA)
	m.SetEdns0(1232, false)
	ts.serve(w, m, "udp", nil) // warm the cache
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m.Id = uint16(i)
		ts.serve(w, m, "udp", nil)
	}
	if w.n == 0 {
		b.Fatal("no answer")
	}
}

// BenchmarkServeCached is the hot path: policy decision, cache hit, patch
// and write. The identity=50k run has 50,000 addresses in the identity
// table, the client's among them (a RADIUS user and a DHCP device name),
// against none in the same run.
func BenchmarkServeCached(b *testing.B) {
	for _, n := range []int{0, 50000} {
		b.Run(identityLabel(n), func(b *testing.B) {
			ts := startServer(b, withIdentity(n))
			runtime.GC() // the table's setup garbage is not collected in the timed loop
			benchQuery(b, ts, "www.example.org.", staff)
		})
	}
}

// BenchmarkServeCachedScheduled is BenchmarkServeCached for a student's
// name that a lesson blocks a minute later (scheduleEngine): the TTLs are
// capped at the time until then (policy.Engine.UntilScheduled).
func BenchmarkServeCachedScheduled(b *testing.B) {
	eng := scheduleEngine(b)
	ts := startServer(b, func(o *Options) { o.Engine = func() *policy.Engine { return eng } })
	runtime.GC()
	benchQuery(b, ts, "play.games.example.", student)
}

// BenchmarkServeBlocked is a blocked name: decision, block answer, event;
// with and without the identity table, as BenchmarkServeCached.
func BenchmarkServeBlocked(b *testing.B) {
	for _, n := range []int{0, 50000} {
		b.Run(identityLabel(n), func(b *testing.B) {
			ts := startServer(b, withIdentity(n))
			runtime.GC() // the table's setup garbage is not collected in the timed loop
			benchQuery(b, ts, "www.porn.example.", student)
		})
	}
}

func identityLabel(n int) string {
	if n == 0 {
		return "identity=none"
	}
	return fmt.Sprintf("identity=%dk", n/1000)
}

// withIdentity gives the server an identity table of n addresses (none for
// 0): 127.0.0.1 and 127.0.0.2 and n-2 others in 10.0.0.0/8.
func withIdentity(n int) func(*Options) {
	if n == 0 {
		return nil
	}
	return func(o *Options) {
		t := identity.New(identity.Options{Now: o.Now})
		exp := o.Now().Add(time.Hour)
		ms := []identity.Mapping{
			{Addr: netip.MustParseAddr(staff), Source: identity.SourceRADIUS, User: "teacher1", Expires: exp},
			{Addr: netip.MustParseAddr(student), Source: identity.SourceRADIUS, User: "pupil1", Expires: exp},
			{Addr: netip.MustParseAddr(student), Source: identity.SourceLease, Device: "lib-laptop-12", Expires: exp},
		}
		for i := range n - 2 {
			ms = append(ms, identity.Mapping{Addr: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}),
				Source: identity.SourceRADIUS, User: fmt.Sprint("user", i), Expires: exp})
		}
		t.SetAll(ms)
		if t.Len() != n {
			panic(fmt.Sprint("identity table holds ", t.Len()))
		}
		o.Identity = t
	}
}

// BenchmarkUDPLoopback sends a cached query over real loopback sockets and
// waits for each answer, with the worker pool and, as the baseline in the
// same run, miekg/dns's goroutine-per-datagram server. Allocations include
// the client's and the server's.
func BenchmarkUDPLoopback(b *testing.B) {
	for _, tc := range []struct {
		name  string
		miekg bool
	}{{"pool", false}, {"miekg", true}} {
		b.Run(tc.name, func(b *testing.B) {
			ts := startServer(b, func(o *Options) { o.MiekgUDP = tc.miekg })
			q := new(mdns.Msg)
			q.SetQuestion("www.example.org.", mdns.TypeA)
			pkt, _ := q.Pack()
			ask(b, "udp", ts.udp, staff, "www.example.org", mdns.TypeA, false) // warm the cache
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				c, err := net.Dial("udp", ts.udp)
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				buf := make([]byte, 1500)
				for pb.Next() {
					if _, err := c.Write(pkt); err != nil {
						b.Error(err)
						return
					}
					if _, err := c.Read(buf); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkServeBlockedStore is BenchmarkServeBlocked with the breach
// store as the sink: "repeat" asks one blocked name (after the first, a
// repeat whose first event is durable: no wait); "new" asks a new blocked
// name each time, so each answer waits for its event's commit (serially,
// so this is the latency of one group commit with synchronous=FULL, not a
// throughput).
func BenchmarkServeBlockedStore(b *testing.B) {
	for _, mode := range []string{"repeat", "new"} {
		b.Run(mode, func(b *testing.B) {
			_, w := storetest.Open(b)
			ts := startServer(b, func(o *Options) { o.Sink, o.Collapse = w, time.Minute })
			if mode == "repeat" {
				benchQuery(b, ts, "www.porn.example.", student)
				return
			}
			names := make([]string, b.N+1)
			for i := range names {
				names[i] = fmt.Sprintf("n%d.porn.example.", i)
			}
			wr := &fakeWriter{remote: &net.UDPAddr{IP: net.ParseIP(student), Port: 40000}}
			m := new(mdns.Msg)
			m.SetQuestion(names[b.N], mdns.TypeA)
			ts.serve(wr, m, "udp", nil)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				m.Question[0].Name = names[i]
				ts.serve(wr, m, "udp", nil)
			}
			if wr.n != b.N+1 {
				b.Fatalf("%d answers for %d queries", wr.n, b.N+1)
			}
		})
	}
}

// BenchmarkServeCachedHTTPS is a cached HTTPS (type 65) query from a
// student for a name the group decrypts (search: vimeo.com), with the
// school's CA loaded: the h3-less answer from the cache.
func BenchmarkServeCachedHTTPS(b *testing.B) {
	ts := startServer(b, func(o *Options) { o.Decrypting = func() bool { return true } })
	w := &fakeWriter{remote: &net.UDPAddr{IP: net.ParseIP("127.0.0.2"), Port: 40000}}
	m := new(mdns.Msg)
	m.SetQuestion("vimeo.com.", mdns.TypeHTTPS)
	m.SetEdns0(1232, false)
	ts.serve(w, m, "udp", nil) // warm the cache
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m.Id = uint16(i)
		ts.serve(w, m, "udp", nil)
	}
	if w.n == 0 {
		b.Fatal("no answer")
	}
}

// BenchmarkServeCachedTunnelBlock is BenchmarkServeCached while a DNS
// tunnel block is in force for another client (tunnel.go): the cost of
// the blocked-domain lookup on the hot path once a block exists.
func BenchmarkServeCachedTunnelBlock(b *testing.B) {
	ts := startServer(b, nil)
	now := ts.clock.now().UnixNano()
	ts.tunnel.mu.Lock()
	ts.tunnel.addBlockLocked(netip.MustParseAddr(student), "tunnel.test", now+int64(time.Hour), now)
	ts.tunnel.mu.Unlock()
	benchQuery(b, ts, "www.example.org.", staff)
}

// BenchmarkTunnelCheck is the DNS tunnel step alone for an allowed query
// (tunnel.go): "short" is an ordinary name with no block in force (the
// hot path: an atomic load and a length test), "long" a long name under
// an allowed domain (public suffix lookup and allow list), "reverse" an
// IPv6 reverse lookup (long, never counted), "blocked" an ordinary name of
// another client while a block is in force.
func BenchmarkTunnelCheck(b *testing.B) {
	for _, tc := range []struct{ name, mode string }{
		{"www.example.org", "short"},
		{"0.0.0.0.1.0.0.4e.13cj7qqc7dp3nfeb9ddxvupeek.ih.sophosxl.net", "long"},
		{"8.7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.3.0.0.2.0.8.4.0.6.8.4.1.0.0.2.ip6.arpa", "reverse"},
		{"www.example.org", "blocked"},
	} {
		b.Run(tc.mode, func(b *testing.B) {
			ts := startServer(b, nil)
			if tc.mode == "blocked" {
				now := ts.clock.now().UnixNano()
				ts.tunnel.mu.Lock()
				ts.tunnel.addBlockLocked(netip.MustParseAddr(student), "tunnel.test", now+int64(time.Hour), now)
				ts.tunnel.mu.Unlock()
			}
			qr := query{q: mdns.Question{Name: tc.name + ".", Qtype: mdns.TypeA, Qclass: mdns.ClassINET}, name: tc.name,
				client: netip.MustParseAddr(staff), now: ts.clock.now()}
			var d policy.Decision
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if ts.tunnelCheck(&qr, &d, "A") {
					b.Fatal("answered")
				}
			}
		})
	}
}

// BenchmarkServeSafeSearch is a search engine's name for a group with safe
// search: decision, the CNAME to the safe endpoint and the endpoint's
// cached answer (a large share of a school's queries). It allocated 19
// times a rewrite, then 9 (the endpoint's answer unpacked once), now none
// (the reply's own parts reused).
func BenchmarkServeSafeSearch(b *testing.B) {
	ts := startServer(b, nil)
	runtime.GC()
	benchQuery(b, ts, "www.google.co.uk.", student)
}

var missSeq atomic.Int64

// BenchmarkUDPMiss asks a new name each time over real loopback sockets,
// so every query is a cache miss the worker resolves at the loopback
// upstream (a miekg/dns server in this process), one query at a time.
// "direct" asks the upstream itself: its figures are the fixed part
// (client and upstream) in the other rows.
func BenchmarkUDPMiss(b *testing.B) {
	ts := startServer(b, func(o *Options) { o.Cache.Entries = 1 << 20 })
	for _, tc := range []struct{ name, addr string }{{"direct", ts.up.addr.String()}, {"gatehouse", ts.udp}} {
		b.Run(tc.name, func(b *testing.B) {
			c, err := net.Dial("udp", tc.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			q := new(mdns.Msg)
			buf := make([]byte, 1500)
			b.ReportAllocs()
			for b.Loop() {
				q.SetQuestion(fmt.Sprintf("n%d.%s.example.org.", missSeq.Add(1), tc.name), mdns.TypeA)
				pkt, _ := q.Pack()
				if _, err := c.Write(pkt); err != nil {
					b.Fatal(err)
				}
				if _, err := c.Read(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
