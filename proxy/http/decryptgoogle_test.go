package httpproxy

import (
	"net/netip"
	"testing"
)

// TestDecryptSearchEveryGoogleDomain: students' default decrypt: search
// decrypts every host the proxy reads search terms on. The search table
// reads google.* (any country domain), so https://www.google.ie/search
// (.de, .com.au, ...) is decrypted as www.google.com is: tunnelled, its
// term would never be read and a self-harm search there never reach the
// DSL.
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
