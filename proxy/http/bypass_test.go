package httpproxy

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestTunnelPortLeadingZero: a tunnel to the TLS-checked port written with
// a leading zero ("site.test:0443") is the same port to the dialler and to
// proxy.connect.ports, so it gets the same non-TLS check (the port is
// made canonical where the request is read).
func TestTunnelPortLeadingZero(t *testing.T) {
	e := newEnv(t, envOpts{tlsPort: true})
	_, oport, _ := net.SplitHostPort(e.origin.Listener.Addr().String())
	code, c, br := e.connect("", "site.test:0"+oport, "")
	if code != 200 {
		t.Fatalf("status %d", code)
	}
	fmt.Fprintf(c, "GET /small HTTP/1.1\r\nHost: site.test\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if resp, err := http.ReadResponse(br, nil); err == nil {
		t.Errorf("plain HTTP went through a tunnel to port 0%s (= %s, the TLS-checked port): %s", oport, oport, resp.Status)
	}
	if e.hits.Load() != 0 {
		t.Error("origin served the non-TLS tunnel")
	}
}

// TestIPListEmbeddedIPv4: an IPv6 literal carrying a listed IPv4 address
// (NAT64 64:ff9b::/96, 6to4) is blocked as the IPv4 address is: where the
// proxy has a NAT64 route, http://[64:ff9b::198.51.100.1]/ reaches the
// listed DoH address (the dial guard judges it by the IPv4 address too).
func TestIPListEmbeddedIPv4(t *testing.T) {
	e := newEnv(t, envOpts{})
	for _, u := range []string{"http://198.51.100.1/", "http://[64:ff9b::198.51.100.1]/", "http://[64:ff9b::c633:6401]/", "http://[2002:c633:6401::]/"} {
		c := e.dial("")
		_ = c.SetDeadline(time.Now().Add(4 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n", u)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: status %d, want 403 (198.51.100.0/24 is on the doh IP list)", u, resp.StatusCode)
		}
	}
}
