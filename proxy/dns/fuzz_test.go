package dns

import (
	"net"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// FuzzServe feeds malformed and odd packets through the whole request
// path (ACL, rate limit, policy, bypass, block, cache, upstream on
// loopback): no panic, no hang. Run: go test -fuzz FuzzServe ./proxy/dns
func FuzzServe(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"www.example.org.", mdns.TypeA}, {"porn.example.", mdns.TypeAAAA}, {"_dns.resolver.arpa.", mdns.TypeSVCB},
		{"mask.icloud.com.", mdns.TypeA}, {"www.google.com.", mdns.TypeA}, {"cdn.example.", mdns.TypeA},
		{"big.example.", mdns.TypeTXT}, {".", mdns.TypeNS}, {"x.example.", mdns.TypeHTTPS}} {
		m := new(mdns.Msg)
		m.SetQuestion(q.name, q.qtype)
		m.SetEdns0(1232, true)
		b, _ := m.Pack()
		f.Add(b)
	}
	f.Add([]byte{0, 1, 2})
	f.Add(make([]byte, 12))
	ts := startServer(f, func(o *Options) { setUpstreamTimeout(o.Upstreams, 200*time.Millisecond) })
	f.Fuzz(func(t *testing.T, pkt []byte) {
		// What the raw bytes do to miekg's reader is miekg's; what a
		// parsed message does to the handler is ours.
		m := new(mdns.Msg)
		if err := m.Unpack(pkt); err != nil {
			return
		}
		for _, proto := range []string{"udp", "tcp"} {
			w := &fakeWriter{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 4000}}
			if proto == "tcp" {
				w.remote = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4000}
			}
			done := make(chan struct{})
			go func() { defer close(done); ts.serve(w, m.Copy(), proto, nil) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatalf("hang on %x", pkt)
			}
			if !m.Response && w.n == 0 {
				t.Fatalf("no answer to %v", m)
			}
			if w.n > 0 {
				r := new(mdns.Msg)
				if err := r.Unpack(w.last); err != nil {
					t.Fatalf("answer does not parse: %v", err)
				}
				if r.Id != m.Id {
					t.Fatal("ID not echoed")
				}
			}
		}
	})
}

// TestRawPacketsOverUDP sends malformed datagrams to the real listener:
// the server survives and still answers.
func TestRawPacketsOverUDP(t *testing.T) {
	ts := startServer(t, nil)
	c := ts.udpClient(t)
	for _, p := range [][]byte{{}, {1}, make([]byte, 11), make([]byte, 12), {0, 1, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'a'},
		{0, 1, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0}} {
		_, _ = c.Write(p)
	}
	if r := ask(t, "udp", ts.udp, staff, "www.example.org", mdns.TypeA, false); r.Rcode != mdns.RcodeSuccess {
		t.Fatalf("after garbage: %v", r)
	}
}
