package dns

import (
	"crypto/tls"
	"net"
	"net/netip"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// TestACLOnConnections: a TCP or DoT connection from an address outside
// clients.allow is closed as it is accepted, before a TLS handshake or a
// query is read, so outsiders cannot hold the listener's connection slots
// (tcpMaxConns, tcpMaxConnsPerAddr) that the school's clients need; an
// address the ACL allows still gets in, and a reload (SetAccess) applies
// to the next connection.
func TestACLOnConnections(t *testing.T) {
	cert, pool := testCert(t)
	ts := startServer(t, func(o *Options) {
		o.ACL = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		o.TLSListen = []string{"127.0.0.1:0"}
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	})
	dot := ts.Addrs()[len(ts.Addrs())-1].String()
	dial := func(from, addr string) net.Conn {
		t.Helper()
		c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}).Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(30 * time.Second)) // the test stops by itself
		return c
	}
	// kept reports whether a query on c is answered (the connection is
	// held open for the next one).
	kept := func(c net.Conn) bool {
		m := new(mdns.Msg)
		m.SetQuestion("www.example.org.", mdns.TypeA)
		dc := &mdns.Conn{Conn: c}
		if err := dc.WriteMsg(m); err != nil {
			return false
		}
		_, err := dc.ReadMsg()
		return err == nil
	}
	if kept(dial("127.0.0.3", ts.tcp)) {
		t.Fatal("TCP: a connection from outside clients.allow was served")
	}
	if !kept(dial(staff, ts.tcp)) {
		t.Fatal("TCP: an allowed client was not served")
	}
	handshake := func(from string) error {
		tc := tls.Client(dial(from, dot), &tls.Config{RootCAs: pool, ServerName: "dns.test"})
		return tc.Handshake()
	}
	if handshake("127.0.0.3") == nil {
		t.Fatal("DoT: a TLS handshake from outside clients.allow was completed")
	}
	if err := handshake(staff); err != nil {
		t.Fatalf("DoT: an allowed client: %v", err)
	}
	ts.SetAccess([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, 0, 0)
	if !kept(dial("127.0.0.3", ts.tcp)) {
		t.Fatal("TCP: an address the reloaded ACL allows was not served")
	}
}

// TestLinkLocalPeerAllowed: the kernel gives a link-local UDP peer with
// its zone (fe80::1%eth0), which no prefix contains; the client is the
// address without it, as over TCP, so the ACL's fe80::/10 takes it.
func TestLinkLocalPeerAllowed(t *testing.T) {
	w := &udpWriter{peer: netip.MustParseAddrPort("[fe80::1%eth0]:5353")}
	a := w.peerAddr()
	if a.Zone() != "" || !netip.MustParsePrefix("fe80::/10").Contains(a) {
		t.Errorf("peer %v: the ACL's fe80::/10 does not contain it", a)
	}
	if a := (&udpWriter{peer: netip.MustParseAddrPort("[::ffff:10.1.2.3]:53")}).peerAddr(); a != netip.MustParseAddr("10.1.2.3") {
		t.Errorf("IPv4-mapped peer %v", a)
	}
}
