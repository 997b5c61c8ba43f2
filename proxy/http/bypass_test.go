package httpproxy

import (
	"bufio"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestIPListEmbeddedIPv4: an IPv6 literal carrying a listed IPv4 address
// (NAT64 64:ff9b::/96 and local-use 64:ff9b:1::/48, 6to4) is blocked as the IPv4 address is: where the
// proxy has a NAT64 route, http://[64:ff9b::198.51.100.1]/ reaches the
// listed DoH address (the dial guard judges it by the IPv4 address too).
func TestIPListEmbeddedIPv4(t *testing.T) {
	e := newEnv(t, envOpts{})
	for _, u := range []string{"http://198.51.100.1/", "http://[64:ff9b::198.51.100.1]/", "http://[64:ff9b::c633:6401]/", "http://[2002:c633:6401::]/", "http://[64:ff9b:1:c633:64:100::]/"} {
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
