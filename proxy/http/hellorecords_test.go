package httpproxy

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// oddRecordsConn rewrites the records of a real crypto/tls client's first
// flight (its ClientHello) in ways TLS servers accept: a warning alert
// record before it (crypto/tls's server drops warning alerts before the
// version is agreed, BoringSSL up to four), or another minor record-layer
// version (the record version is not the protocol's: servers check the
// major byte, crypto/tls not even that on the first record).
type oddRecordsConn struct {
	net.Conn
	how  string
	done bool
}

func (c *oddRecordsConn) Write(b []byte) (int, error) {
	if c.done || len(b) < 5 || b[0] != 0x16 {
		return c.Conn.Write(b)
	}
	c.done = true
	out := append([]byte(nil), b...)
	switch c.how {
	case "alert first":
		out = append([]byte{0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x5a}, out...) // warning, user_canceled
	case "record version 3.5":
		out[2] = 0x05
	case "alert between records":
		// The hello split in two records with a warning alert between.
		n := int(out[3])<<8 | int(out[4])
		body := out[5 : 5+n]
		half := len(body) / 2
		var r []byte
		r = append(r, 0x16, out[1], out[2], byte(half>>8), byte(half))
		r = append(r, body[:half]...)
		r = append(r, 0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x5a)
		r = append(r, 0x16, out[1], out[2], byte((len(body)-half)>>8), byte(len(body)-half))
		r = append(r, body[half:]...)
		out = append(r, out[5+n:]...)
	}
	if _, err := c.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}

// TestConnectSNIOddRecords: a ClientHello from crypto/tls naming a blocked
// site through an allowed name's tunnel, its records dressed as real TLS
// servers accept (crypto/tls's own server here). The proxy read those
// bytes as "not TLS": on a port other than 443 that the school opens
// (proxy.connect.ports) such a tunnel goes on unread, so SNI fronting
// reached the blocked site with no event; on 443 with non_tls: flag the
// blocked site was served with a flag about non-TLS traffic. The proxy
// reads the hello as the server does, and decides its name.
func TestConnectSNIOddRecords(t *testing.T) {
	for _, how := range []string{"alert first", "record version 3.5", "alert between records"} {
		for _, port443 := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/443=%v", how, port443), func(t *testing.T) {
				ie := newInspectEnv(t, "")
				ie.setDecrypt(config.DecryptOff)
				if port443 {
					ie.s.tlsPort = ie.port // the origin's port is "443"
					ie.editProxy(func(p *config.Proxy) { p.Connect.NonTLS = "flag" })
				}
				code, c, br := ie.connect("", "site.test:"+ie.port, "")
				if code != http.StatusOK || br.Buffered() != 0 {
					t.Fatalf("CONNECT: %d", code)
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				tlc := tls.Client(&oddRecordsConn{Conn: c, how: how}, &tls.Config{ServerName: "adult.test", RootCAs: ie.originPool, NextProtos: []string{"http/1.1"}})
				if err := tlc.Handshake(); err == nil {
					fmt.Fprintf(tlc, "GET / HTTP/1.1\r\nHost: adult.test\r\nConnection: close\r\n\r\n")
					b, _ := io.ReadAll(tlc)
					if strings.Contains(string(b), "origin says hello to adult.test") {
						t.Fatalf("SNI adult.test (blocked) through site.test's tunnel: %q", firstLine(string(b)))
					}
				}
				ev := ie.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Reason == "sni" })
				if ev.Action != "block" || !strings.HasPrefix(ev.Name, "adult.test:") || !ev.Bypass {
					t.Errorf("event %+v", ev)
				}
			})
		}
	}
}
