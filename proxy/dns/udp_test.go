package dns

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// TestWildcardRepliesFromQueriedAddress: on a wildcard address each reply
// leaves from the address the query was sent to. The client's socket is
// connected, so a reply from another address would never reach it.
func TestWildcardRepliesFromQueriedAddress(t *testing.T) {
	for _, c := range []struct {
		listen string
		poller bool
	}{{"0.0.0.0:0", false}, {"[::]:0", false}, {"0.0.0.0:0", true}, {"[::]:0", true}} {
		listen := c.listen
		t.Run(fmt.Sprintf("%s/poller=%v", listen, c.poller), func(t *testing.T) {
			ts := startServer(t, func(o *Options) { o.Listen, o.UDPPoller = []string{listen}, c.poller })
			if len(ts.udp) == 0 {
				t.Fatal("no UDP listener")
			}
			_, port, _ := net.SplitHostPort(ts.udp)
			if len(ts.Server.udp) != ts.Server.udpSockets() {
				t.Fatalf("wildcard address not served by the worker pool (%d)", len(ts.Server.udp))
			}
			for _, to := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.1"} {
				r := ask(t, "udp", net.JoinHostPort(to, port), staff, "www.example.org", mdns.TypeA, true)
				if r.Rcode != mdns.RcodeSuccess || firstA(r) != "192.0.2.1" {
					t.Fatalf("query to %s: %v", to, r)
				}
			}
			if listen == "[::]:0" {
				if c, err := net.ListenPacket("udp", "[::1]:0"); err == nil {
					c.Close()
					r := ask(t, "udp", net.JoinHostPort("::1", port), "::1", "www.example.org", mdns.TypeA, false)
					if r.Rcode != mdns.RcodeSuccess {
						t.Fatalf("query to ::1: %v", r)
					}
				}
			}
		})
	}
}

// TestSlowUpstreamDoesNotStallUDP: queries waiting on an upstream hold
// their workers, yet a cached name is still answered at once, because the
// pool grows while no worker is reading the socket.
func TestSlowUpstreamDoesNotStallUDP(t *testing.T) {
	hold := make(chan struct{})
	ts := startServer(t, func(o *Options) { setUpstreamTimeout(o.Upstreams, 20*time.Second) })
	ts.up.holdSlow(hold)
	ask(t, "udp", ts.udp, staff, "www.example.org", mdns.TypeA, false) // cached from now on
	const slow = 40
	var wg sync.WaitGroup
	errs := make(chan error, slow)
	for i := range slow {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := new(mdns.Msg)
			m.SetQuestion(fmt.Sprintf("slow%d.example.", i), mdns.TypeA)
			c := &mdns.Client{Timeout: 30 * time.Second}
			if r, _, err := c.Exchange(m, ts.udp); err != nil {
				errs <- err
			} else if r.Rcode != mdns.RcodeSuccess {
				errs <- fmt.Errorf("slow%d: rcode %d", i, r.Rcode)
			}
		}()
	}
	ts.up.waitHeld(t, slow, hold)
	// Every slow query now holds a worker; the upstream timeout is 20 s.
	m := new(mdns.Msg)
	m.SetQuestion("www.example.org.", mdns.TypeA)
	r, _, err := (&mdns.Client{Timeout: 30 * time.Second}).Exchange(m, ts.udp)
	close(hold)
	if err != nil || r.Rcode != mdns.RcodeSuccess {
		t.Fatalf("cached name while %d queries wait on the upstream: %v %v", slow, r, err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestMalformedDatagrams: the worker pool answers as miekg/dns's server
// does: FORMERR (ID echoed) for a query without one question, NOTIMP for an
// unknown opcode, silence for responses and runt packets.
func TestMalformedDatagrams(t *testing.T) {
	ts := startServer(t, nil)
	c := ts.udpClient(t)
	// exchange sends p and returns the reply with p's ID. When no reply is
	// wanted, a probe query follows p and the reply to p is nil if the
	// probe's comes first: silence is told by order, not by a short wait.
	probe := new(mdns.Msg)
	probe.SetQuestion("www.example.org.", mdns.TypeA)
	probe.Id = 0xbeef
	pb, _ := probe.Pack()
	exchange := func(p []byte, wantReply bool) *mdns.Msg {
		t.Helper()
		send := [][]byte{p}
		if !wantReply {
			send = append(send, pb)
		}
		for _, b := range send {
			if _, err := c.Write(b); err != nil {
				t.Fatal(err)
			}
		}
		id := uint16(p[0])<<8 | uint16(p[1])
		for {
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			buf := make([]byte, 2048)
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("no reply: %v", err)
			}
			m := new(mdns.Msg)
			if err := m.Unpack(buf[:n]); err != nil {
				t.Fatalf("reply does not parse: %v", err)
			}
			switch {
			case m.Id == id:
				return m
			case m.Id == probe.Id && !wantReply:
				return nil
			}
		}
	}
	if r := exchange([]byte{0x12, 0x34, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0}, true); r == nil || r.Id != 0x1234 || r.Rcode != mdns.RcodeFormatError || !r.RecursionDesired {
		t.Fatalf("no question: %v", r)
	}
	if r := exchange([]byte{0, 7, 5 << 3, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1}, true); r == nil || r.Rcode != mdns.RcodeNotImplemented || r.Opcode != 5 {
		t.Fatalf("UPDATE opcode: %v", r)
	}
	if r := exchange([]byte{0, 8, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1}, false); r != nil {
		t.Fatalf("answered a response: %v", r)
	}
	if r := exchange([]byte{1, 2, 3}, false); r != nil {
		t.Fatalf("answered a runt: %v", r)
	}
	q := new(mdns.Msg)
	q.SetQuestion("www.example.org.", mdns.TypeA)
	b, _ := q.Pack()
	if r := exchange(b, true); r == nil || r.Id != q.Id || firstA(r) != "192.0.2.1" {
		t.Fatalf("after garbage: %v", r)
	}
}

// FuzzServePacket feeds raw datagrams to the worker pool's parser and the
// request path: no panic, no hang, and any answer parses and echoes the ID.
func FuzzServePacket(f *testing.F) {
	m := new(mdns.Msg)
	m.SetQuestion("www.example.org.", mdns.TypeA)
	m.SetEdns0(1232, true)
	b, _ := m.Pack()
	f.Add(b)
	f.Add([]byte{0x12, 0x34, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0, 7, 5 << 3, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1})
	ts := startServer(f, func(o *Options) { setUpstreamTimeout(o.Upstreams, 200*time.Millisecond) })
	qb := new(queryBuf) // one worker's: reused across datagrams
	f.Fuzz(func(t *testing.T, pkt []byte) {
		w := &fakeWriter{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 4000}}
		done := make(chan struct{})
		go func() { defer close(done); ts.servePacket(w, pkt, qb) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("hang on %x", pkt)
		}
		if w.n > 0 {
			r := new(mdns.Msg)
			if err := r.Unpack(w.last); err != nil {
				t.Fatalf("answer does not parse: %v", err)
			}
			if len(pkt) < 2 || r.Id != uint16(pkt[0])<<8|uint16(pkt[1]) {
				t.Fatal("ID not echoed")
			}
		}
	})
}

// TestUDPLatencyMetrics: every UDP query is timed from the kernel's
// receive time to the read (gatehouse_dns_udp_wait_seconds, Linux) and
// from the read to the answer (gatehouse_dns_udp_answer_seconds); an
// answer held for its event's commit is not counted as answered there.
func TestUDPLatencyMetrics(t *testing.T) {
	ts := startServer(t, nil)
	const n = 20
	for i := range n {
		if m := ask(t, "udp", ts.udp, "127.0.0.1", fmt.Sprintf("n%d.example.org", i), mdns.TypeA, false); m.Rcode != mdns.RcodeSuccess {
			t.Fatalf("query %d: %v", i, m)
		}
	}
	// A worker times its answer just after writing it: the last one may
	// still be on its way to the histogram when the client has it.
	for i := 0; ; i++ {
		c, sum := histCount(t, ts.metrics.udpAnswer)
		if c == n && sum > 0 {
			break
		}
		if c > n || i == 1000 {
			t.Fatalf("answer histogram: %d samples (sum %v), want %d", c, sum, n)
		}
		time.Sleep(time.Millisecond)
	}
	c, sum := histCount(t, ts.metrics.udpWait)
	if runtime.GOOS == "linux" && (c != n || sum < 0) {
		t.Errorf("wait histogram: %d samples (sum %v), want %d", c, sum, n)
	}
}

// TestUDPSocketsShareAnAddress: through the poller each UDP address is
// served by Options.UDPSockets sockets bound with SO_REUSEPORT, one worker
// each; with blocking sockets (Linux's default) by one socket read by
// GOMAXPROCS workers (at least 2). Either way queries from many client ports are
// all answered, the address is listed once, and shutdown stops every
// worker (blocked in recvmsg or not) and frees the port.
func TestUDPSocketsShareAnAddress(t *testing.T) {
	if !reusePortSupported {
		t.Skip("one socket per address on this system")
	}
	t.Run("poller", func(t *testing.T) {
		testUDPLayout(t, func(o *Options) { o.UDPSockets, o.UDPPoller = 4, true }, 4, 1)
	})
	t.Run("blocking", func(t *testing.T) {
		if !blockingSupported {
			t.Skip("no blocking sockets on this system")
		}
		testUDPLayout(t, nil, 1, int32(max(2, runtime.GOMAXPROCS(0))))
	})
}

func testUDPLayout(t *testing.T, opts func(*Options), sockets int, workers int32) {
	const clients, each = 40, 5
	ts := startServer(t, opts)
	if len(ts.Server.udp) != sockets {
		t.Fatalf("%d UDP sockets, want %d", len(ts.Server.udp), sockets)
	}
	n := 0
	for _, a := range ts.Addrs() {
		if _, ok := a.(*net.UDPAddr); ok {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("addresses %v: the UDP address should be listed once", ts.Addrs())
	}
	for _, l := range ts.Server.udp {
		if w := l.workers.Load(); w != workers {
			t.Fatalf("%d workers on a socket, want %d", w, workers)
		}
		if _, blocking := l.conn.(*net.UDPConn); blocking == (opts == nil) {
			t.Fatalf("socket %T, want blocking %v", l.conn, opts == nil)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients*each)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// One client socket (one source port) per client.
			co, err := (&mdns.Client{Net: "udp", Timeout: 10 * time.Second}).Dial(ts.udp)
			if err != nil {
				errs <- err
				return
			}
			defer co.Close()
			for i := range each {
				m := new(mdns.Msg)
				m.SetQuestion(fmt.Sprintf("c%d-%d.example.org.", c, i), mdns.TypeA)
				if err := co.WriteMsg(m); err != nil {
					errs <- err
					return
				}
				r, err := co.ReadMsg()
				if err != nil || r.Id != m.Id || r.Rcode != mdns.RcodeSuccess {
					errs <- fmt.Errorf("client %d query %d: %v %v", c, i, r, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ts.Server.Shutdown(ctx)
	for i, l := range ts.Server.udp {
		if w := l.workers.Load(); w != 0 {
			t.Errorf("socket %d: %d workers left after shutdown", i, w)
		}
	}
	c, err := net.ListenPacket("udp", ts.udp) // no socket of the group is left
	if err != nil {
		t.Fatalf("port still held after shutdown: %v", err)
	}
	c.Close()
}

// TestSecondServerCannotShareThePort: SO_REUSEPORT would let a second
// Gatehouse (a stale one, another config) join the UDP sockets and
// answer half the queries; its TCP listener on the same port (bound
// without SO_REUSEPORT) fails, so its start fails and it leaves the
// group at once.
func TestSecondServerCannotShareThePort(t *testing.T) {
	ts := startServer(t, nil)
	up := startUpstream(t, "192.0.2.7")
	ups, err := NewUpstreams([]UpstreamSpec{{Addr: up.addr}}, nil, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := New(Options{Listen: []string{ts.udp}, Upstreams: ups, Engine: ts.opts.Engine})
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Start(context.Background()); err == nil {
		s2.Shutdown(context.Background())
		t.Fatalf("a second server started on %s", ts.udp)
	}
	for i := range 20 { // every answer is the first server's
		if r := ask(t, "udp", ts.udp, staff, fmt.Sprintf("s%d.example.org", i), mdns.TypeA, false); firstA(r) != "192.0.2.1" {
			t.Fatalf("answer from the second server: %v", r)
		}
	}
}
