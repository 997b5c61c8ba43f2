package httpproxy

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// TestConnectSNIFronting: a CONNECT to an allowed name whose ClientHello
// names a blocked site. The origin here, like a CDN (Cloudflare, Fastly,
// Akamai), serves whichever site the SNI names, so the pupil gets the
// blocked site through the allowed name's tunnel. The proxy already reads
// the first bytes of every tunnel to port 443 (the non-TLS rule); the
// server name is in those bytes in the clear and must be decided as the
// CONNECT's host is (transparent mode does).
func TestConnectSNIFronting(t *testing.T) {
	for _, tc := range []struct {
		mode, host string
	}{
		{config.DecryptBlocks, "site.test"}, // an allowed name, tunnelled
		{config.DecryptAll, "www.nhs.uk"},   // a never-decrypt name
		{config.DecryptOff, "site.test"},    // no decryption at all
	} {
		t.Run(tc.mode+"/"+tc.host, func(t *testing.T) {
			ie := newInspectEnv(t, "")
			ie.setDecrypt(tc.mode)
			ie.s.tlsPort = ie.port // the origin's port is "443": tunnels there are checked
			code, c, br := ie.connect("", tc.host+":"+ie.port, "")
			if code != http.StatusOK || br.Buffered() != 0 {
				t.Fatalf("CONNECT %s: %d", tc.host, code)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			tlc := tls.Client(c, &tls.Config{ServerName: "adult.test", RootCAs: ie.originPool, NextProtos: []string{"http/1.1"}})
			if err := tlc.Handshake(); err != nil {
				// Refused: what should happen, with a bypass event for the
				// blocked name.
				ev := ie.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Reason == "sni" })
				if ev.Action != "block" || !strings.HasPrefix(ev.Name, "adult.test:") || ev.Category != "pornography" || !ev.Bypass {
					t.Errorf("event %+v", ev)
				}
				return
			}
			fmt.Fprintf(tlc, "GET / HTTP/1.1\r\nHost: adult.test\r\nConnection: close\r\n\r\n")
			b, _ := io.ReadAll(tlc)
			if strings.Contains(string(b), "origin says hello to adult.test") {
				t.Errorf("CONNECT %s:%s then SNI adult.test (blocked, pornography): the blocked site was served through the tunnel: %q",
					tc.host, ie.port, firstLine(string(b)))
			}
		})
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
