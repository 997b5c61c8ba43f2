package dns

import (
	"strings"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/policy"
)

// Bypass defences that need more than the policy's block:
//
//   - DDR (RFC 9462: resolver.arpa, _dns.resolver.arpa) gets NODATA, so
//     clients do not upgrade to an encrypted resolver elsewhere. Counted as
//     a probe, never reported.
//   - DoH canaries (use-application-dns.net) get NXDOMAIN, which turns off
//     Firefox's default DoH. Counted as a probe, never reported.
//   - iCloud Private Relay (mask.icloud.com, mask-h2.icloud.com) always gets
//     NXDOMAIN (Apple's documented switch for managed networks), and the
//     device is reported once a day as a low-severity "bypass capability".
//   - A DoH provider's name is the same: the device has a DoH setting on.
//   - VPN, web proxy and Tor services are bypass attempts at their
//     configured severity (default high), through the normal block path.
//   - A VPN over DNS (a DNS tunnel under a domain on no list) is found by
//     the names a client asks for, and reported and blocked as a VPN
//     (tunnel.go).

// bypassKind classifies a decision for the bypass handling.
type bypassKind uint8

const (
	bypassNone       bypassKind = iota
	bypassDDR                   // NODATA, probe
	bypassCanary                // NXDOMAIN, probe
	bypassCapability            // low-severity, once per device per day
)

// isDDR reports whether name is a Discovery of Designated Resolvers name.
func isDDR(name string) bool {
	return name == "resolver.arpa" || strings.HasSuffix(name, ".resolver.arpa")
}

// classifyBypass looks at a policy decision for name.
func classifyBypass(name string, d *policy.Decision) bypassKind {
	if isDDR(name) {
		return bypassDDR
	}
	if d.Probe {
		return bypassCanary
	}
	if d.Matched.Has(bl.PrivateRelay) {
		return bypassCapability
	}
	if d.Action == policy.Block && d.HasCategory && d.Category == bl.DoH {
		return bypassCapability
	}
	return bypassNone
}
