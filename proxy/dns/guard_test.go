package dns

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse-filter/gatehouse/reports"
)

// panicSink is an event sink that panics on names starting with prefix:
// a fault in the query path of a blocked query.
type panicSink struct {
	sink
	prefix string
}

func (s *panicSink) Record(e reports.Event) bool {
	if strings.HasPrefix(e.Name, s.prefix) {
		panic("sink failed on " + e.Name)
	}
	return s.sink.Record(e)
}

// syncBuffer is a log destination safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestPanicCostsOnlyItsQuery: a query whose answering panics (here the
// event sink fails on one name) is logged with its question and client,
// counted, and answered (blocked or SERVFAIL, never resolved); the UDP
// workers, the TCP connection and the DoT connection go on serving.
func TestPanicCostsOnlyItsQuery(t *testing.T) {
	// Each bad name is asked once: a repeat would be collapsed into a
	// follow-up event, which reaches the sink later, off the query path.
	bad := func(i int) string { return fmt.Sprintf("bad%d.porn.example", i) }
	cert, pool := testCert(t)
	var logs syncBuffer
	ts := startServer(t, func(o *Options) {
		o.Sink = &panicSink{prefix: "bad"}
		o.Log = slog.New(slog.NewTextHandler(&logs, nil))
		o.TLSListen = []string{"127.0.0.1:0"}
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	})
	dot := ts.Addrs()[len(ts.Addrs())-1].String()
	panics := 0
	check := func(proto string, r *mdns.Msg, err error, what string) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s %s: %v", proto, what, err)
		}
		if strings.HasPrefix(what, "bad") {
			if r.Rcode != mdns.RcodeNameError && r.Rcode != mdns.RcodeServerFailure {
				t.Fatalf("%s: the panicking query was answered %v", proto, r)
			}
		} else if r.Rcode != mdns.RcodeSuccess || firstA(r) != "192.0.2.1" {
			t.Fatalf("%s: %s after the panic: %v", proto, what, r)
		}
	}
	// UDP: more panics than there are workers.
	n := 0
	for i := range 3 * 2 * 8 {
		n++
		check("udp", ask(t, "udp", ts.udp, student, bad(n), mdns.TypeA, true), nil, bad(n))
		panics++
		if i%8 == 0 {
			check("udp", ask(t, "udp", ts.udp, student, fmt.Sprintf("ok%d.example.org", i), mdns.TypeA, true), nil, "ok")
		}
	}
	// TCP and DoT: the same connection answers after the panic.
	for _, c := range []struct{ proto, addr string }{{"tcp", ts.tcp}, {"tcp-tls", dot}} {
		cl := &mdns.Client{Net: c.proto, Timeout: 5 * time.Second, TLSConfig: &tls.Config{RootCAs: pool, ServerName: "dns.test"}}
		conn, err := cl.Dial(c.addr)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 4 {
			name := "www.example.org"
			if i%2 == 0 {
				n++
				name = bad(n)
				panics++
			}
			m := new(mdns.Msg)
			m.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
			r, _, err := cl.ExchangeWithConn(m, conn)
			if err == nil && r.Id != m.Id {
				err = fmt.Errorf("reply %d to query %d", r.Id, m.Id)
			}
			check(c.proto, r, err, name)
		}
		conn.Close()
	}
	if got := testutil.ToFloat64(ts.metrics.panics); got != float64(panics) {
		t.Errorf("gatehouse_dns_panics_total = %v, want %d", got, panics)
	}
	out := logs.String()
	if n := strings.Count(out, "dns query panicked"); n != panics {
		t.Errorf("%d panics logged, want %d:\n%.2000s", n, panics, out)
	}
	for _, want := range []string{"name=" + bad(1) + ".", "client=" + student, "proto=dot", "sink failed on " + bad(n)} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%.2000s", want, out)
		}
	}
	if n := ts.Server.udp[0].workers.Load(); n < 1 {
		t.Errorf("%d UDP workers left", n)
	}
}

// TestUpstreamWaitsBounded: with the upstream holding every slow* query,
// many distinct misses hold at most MaxWaitingPerSocket workers per UDP
// socket and MaxWaiting queries in all (UDP and TCP); the rest are
// answered SERVFAIL at once and counted, a cached name is still answered,
// and the held queries are answered once the upstream replies.
func TestUpstreamWaitsBounded(t *testing.T) {
	const perSocket, overall, misses = 6, 10, 40
	hold := make(chan struct{})
	ts := startServer(t, func(o *Options) {
		setUpstreamTimeout(o.Upstreams, 30*time.Second)
		o.Listen = []string{"127.0.0.1:0", "127.0.0.1:0"}
		o.UDPSockets = 1 // one socket per address, read by several workers
		o.MaxWaitingPerSocket, o.MaxWaiting = perSocket, overall
		o.Cache.Prefetch = false
	})
	var udps, tcps []string
	for _, a := range ts.Addrs() {
		if _, ok := a.(*net.UDPAddr); ok {
			udps = append(udps, a.String())
		} else {
			tcps = append(tcps, a.String())
		}
	}
	if len(ts.Server.udp) != 2 || len(tcps) != 2 {
		t.Fatalf("listeners: %v", ts.Addrs())
	}
	base := ts.Server.udp[0].workers.Load()
	ask(t, "udp", udps[0], staff, "www.example.org", mdns.TypeA, false) // cached from now on
	ts.up.holdSlow(hold)
	type result struct {
		rcode int
		err   error
	}
	results := make(chan result, 3*misses)
	var wg sync.WaitGroup
	send := func(netw, addr string, i int) {
		defer wg.Done()
		m := new(mdns.Msg)
		// A name of its own: identical misses would share one exchange.
		m.SetQuestion(fmt.Sprintf("slow-%s-%s-%d.example.", netw, strings.NewReplacer(":", "-", ".", "-").Replace(addr), i), mdns.TypeA)
		r, _, err := (&mdns.Client{Net: netw, Timeout: 60 * time.Second}).Exchange(m, addr)
		if err != nil {
			results <- result{-1, err}
			return
		}
		results <- result{r.Rcode, nil}
	}
	// First fill one socket: it takes perSocket, the rest are refused.
	for i := range misses {
		wg.Add(1)
		go send("udp", udps[0], i)
	}
	busy := 0
	for busy < misses-perSocket {
		r := <-results
		if r.err != nil || r.rcode != mdns.RcodeServerFailure {
			close(hold)
			t.Fatalf("an over-limit miss: rcode %d, %v", r.rcode, r.err)
		}
		busy++
	}
	ts.up.waitHeld(t, perSocket, hold)
	if n := ts.Server.udp[0].workers.Load(); n > base+perSocket {
		close(hold)
		t.Fatalf("%d workers on the socket, bound %d+%d", n, base, perSocket)
	}
	// Then the other socket and TCP share what is left of the overall bound.
	for i := range misses {
		wg.Add(2)
		go send("udp", udps[1], i)
		go send("tcp", tcps[1], i)
	}
	for busy < misses-perSocket+2*misses-(overall-perSocket) {
		r := <-results
		if r.err != nil || r.rcode != mdns.RcodeServerFailure {
			close(hold)
			t.Fatalf("an over-limit miss: rcode %d, %v", r.rcode, r.err)
		}
		busy++
	}
	ts.up.waitHeld(t, overall, hold)
	w0, w1 := ts.Server.udp[0].workers.Load(), ts.Server.udp[1].workers.Load()
	held := ts.up.held.Load()
	r := ask(t, "udp", udps[0], staff, "www.example.org", mdns.TypeA, false)
	close(hold)
	if held != overall || w0 > base+perSocket || w1 > base+perSocket || ts.waiting.Load() > overall {
		t.Errorf("held upstream %d (bound %d), workers %d and %d (bound %d each), waiting %d",
			held, overall, w0, w1, base+perSocket, ts.waiting.Load())
	}
	if r.Rcode != mdns.RcodeSuccess || firstA(r) != "192.0.2.1" {
		t.Errorf("cached name at the limit: %v", r)
	}
	wg.Wait()
	close(results)
	ok := 0
	for r := range results {
		if r.err != nil || r.rcode != mdns.RcodeSuccess {
			t.Errorf("a held miss: rcode %d, %v", r.rcode, r.err)
		}
		ok++
	}
	if ok != overall {
		t.Errorf("%d held misses answered, want %d", ok, overall)
	}
	if got := testutil.ToFloat64(ts.metrics.upstreamBusy); got != float64(busy) {
		t.Errorf("gatehouse_dns_upstream_busy_total = %v, want %d", got, busy)
	}
	// The detached workers retire (at most maxRetired a socket) or exit,
	// and the slots are given back, once they have answered (just after
	// the reply is sent).
	active := func(l *udpListener) int32 { return l.workers.Load() - l.retired.Load() }
	settled := func() bool {
		return active(ts.Server.udp[0]) == base && active(ts.Server.udp[1]) == base && ts.waiting.Load() == 0
	}
	for i := 0; !settled() && i < 3000; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if !settled() || ts.Server.udp[0].retired.Load() > maxRetired {
		t.Errorf("after: %d and %d workers not retired (base %d), %d retired, %d waiting", active(ts.Server.udp[0]),
			active(ts.Server.udp[1]), base, ts.Server.udp[0].retired.Load(), ts.waiting.Load())
	}
}

// TestFlightPanicReleasesWaiters: when resolving panics, the queries that
// share the exchange get an error instead of waiting for ever, the key is
// free for the next query, and the panic goes on to the query that ran it
// (whose own recover logs it).
func TestFlightPanicReleasesWaiters(t *testing.T) {
	f := flight{calls: map[cacheKey]*call{}}
	k := cacheKey{name: "boom.example", qtype: mdns.TypeA}
	started, release := make(chan struct{}), make(chan struct{})
	leader := make(chan any, 1)
	go func() {
		defer func() { leader <- recover() }()
		_, _ = f.do(k, func() (*entry, error) {
			close(started)
			<-release
			panic("resolver bug")
		})
	}()
	<-started
	waiter := make(chan error, 1)
	go func() {
		_, err := f.do(k, func() (*entry, error) { return nil, fmt.Errorf("ran a second exchange") })
		waiter <- err
	}()
	for joined := false; !joined; time.Sleep(time.Millisecond) {
		f.mu.Lock()
		joined = f.calls[k].dups == 1
		f.mu.Unlock()
	}
	close(release)
	if v := <-leader; v == nil || fmt.Sprint(v) != "resolver bug" {
		t.Fatalf("the leader's panic: %v", v)
	}
	if err := <-waiter; err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Fatalf("waiter: %v", err)
	}
	if _, err := f.do(k, func() (*entry, error) { return nil, nil }); err != nil {
		t.Fatalf("next query: %v", err)
	}
}

// TestMissWorkersReused: a worker whose upstream wait is over retires and
// takes the place of the next one that waits, so a stream of cache misses
// does not start a goroutine for each; the retired are bounded, and exit
// when the listener closes (TestUpstreamWaitsBounded's workers count).
func TestMissWorkersReused(t *testing.T) {
	ts := startServer(t, func(o *Options) {
		o.UDPSockets = 1
		o.Cache.Prefetch = false
	})
	started := func() float64 { return testutil.ToFloat64(ts.metrics.udpStarted) }
	base := started()
	c := ts.udpClient(t)
	buf := make([]byte, 1500)
	for i := range 200 {
		m := new(mdns.Msg)
		m.SetQuestion(fmt.Sprintf("reuse-%d.example.", i), mdns.TypeA)
		pkt, _ := m.Pack()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write(pkt); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	if hits := ts.up.count("reuse-199.example."); hits != 1 {
		t.Fatalf("the last miss reached the upstream %d times", hits)
	}
	// One miss at a time: after the first, a retired worker is always
	// free (it retires right after writing its answer, so at most a few
	// misses can come before it is back).
	if n := started() - base; n > 20 {
		t.Errorf("200 sequential misses started %.0f workers, want a few", n)
	}
	if n := ts.Server.udp[0].retired.Load(); n > maxRetired {
		t.Errorf("%d retired workers, bound %d", n, maxRetired)
	}
}
