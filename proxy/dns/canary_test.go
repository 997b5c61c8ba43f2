package dns

import (
	"maps"
	"net/netip"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/gatehouse-filter/gatehouse/policy"
)

// TestCanaryOnBypassList: Firefox keeps its default DNS-over-HTTPS on
// unless use-application-dns.net fails to resolve (NXDOMAIN, or no
// address). The DoH hostname feed the README recommends (dibdot's
// DoH-IP-blocklists, doh-domains.txt) lists the canary itself among the
// DoH servers, so with it loaded as category doh the canary matched doh
// too and was decided as a DoH provider, not as the probe: under
// block_response null or blockpage Firefox got an address (0.0.0.0 or the
// block page's), kept DoH on and skipped the school's resolver; under
// nxdomain every Firefox device was reported to the DSL each day as a
// "bypass capability". The canary is answered NXDOMAIN for every type, for
// every group and every block response, and is never reported.
func TestCanaryOnBypassList(t *testing.T) {
	text := strings.Replace(testConfig, "lists:\n", `lists:
  - name: doh-feed
    path: {{dir}}/doh-domains.txt
    category: doh
  - name: bypass-feed
    path: {{dir}}/bypass.txt
    category: vpn
`, 1)
	files := map[string]string{
		// As in dibdot's doh-domains.txt and a bypass feed built from it.
		"doh-domains.txt": "dns.example\nuse-application-dns.net\nmask.icloud.com\n",
		"bypass.txt":      "use-application-dns.net\n",
	}
	maps.Copy(files, testFiles)
	eng := engineWith(t, text, files)
	for _, mode := range []string{BlockNXDomain, BlockNull, BlockBlockPage} {
		t.Run(mode, func(t *testing.T) {
			ts := startServer(t, func(o *Options) {
				o.Engine = func() *policy.Engine { return eng }
				o.BlockResponse = mode
				o.BlockPageIP = netip.MustParseAddr("192.0.2.99")
			})
			for _, from := range []string{staff, student} {
				for _, qt := range []uint16{mdns.TypeA, mdns.TypeAAAA, mdns.TypeHTTPS, mdns.TypeANY} {
					for _, name := range []string{"use-application-dns.net", "USE-Application-DNS.net"} {
						r := ask(t, "udp", ts.udp, from, name, qt, true)
						if r.Rcode != mdns.RcodeNameError || len(r.Answer) != 0 {
							t.Errorf("%s %s from %s: want NXDOMAIN, got %v", name, mdns.TypeToString[qt], from, r)
						}
					}
				}
			}
			if n := ts.up.count("use-application-dns.net."); n != 0 {
				t.Errorf("the canary reached the upstream %d times", n)
			}
			// A DoH server on the same feed is still a bypass capability.
			if r := ask(t, "udp", ts.udp, student, "dns.example", mdns.TypeA, true); r.Rcode == mdns.RcodeSuccess && firstA(r) == "192.0.2.1" {
				t.Errorf("dns.example resolved: %v", r)
			}
			time.Sleep(200 * time.Millisecond) // the collapse window (50 ms) and its follow-ups
			var doh int
			for _, e := range ts.sink.events() {
				switch {
				case strings.EqualFold(e.Name, "use-application-dns.net") && !e.Probe:
					t.Errorf("the canary was reported: %+v", e)
				case e.Name == "dns.example" && e.Bypass:
					doh++
				}
			}
			if doh != 1 {
				t.Errorf("dns.example: %d bypass events, want 1", doh)
			}
		})
	}
}
