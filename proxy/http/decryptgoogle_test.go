package httpproxy

import (
	"net/netip"
	"testing"
)

// TestDecryptSearchEveryGoogleDomain: students' default decrypt: search
// must decrypt every host the proxy reads search terms on. The search
// table reads google.* (any country domain), but only www.google.com and
// www.google.co.uk are decrypted: https://www.google.ie/search?q=... (or
// .de, .fr, .com.au, ...) is tunnelled, its term never read, and a
// self-harm search there never reaches the DSL.
func TestDecryptSearchEveryGoogleDomain(t *testing.T) {
	ie := newInspectEnv(t, "")
	ie.res.mu.Lock()
	for _, h := range []string{"www.google.ie", "www.google.de", "www.google.com.au"} {
		ie.res.names[h] = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	}
	ie.res.mu.Unlock()
	for _, host := range []string{"www.google.com", "www.google.ie", "www.google.de", "www.google.com.au"} {
		resp, _ := get(t, ie.httpsClient(ie.both, true), ie.url(host, "/search?q=how+to+kill+myself"))
		if issuer(resp) != "Test Academy web filter CA" {
			t.Errorf("https://%s/search: certificate from %q: tunnelled, so its search term is not read (want decrypted, as www.google.com is)", host, issuer(resp))
		}
	}
}
