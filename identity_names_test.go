package main

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// proxyGetFrom sends a request for target through the proxy at proxy from
// the loopback address from (no login) and returns the status.
func proxyGetFrom(t *testing.T, proxy net.Addr, from, target string) int {
	t.Helper()
	u := &url.URL{Scheme: "http", Host: proxy.String()}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(u),
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(target)
	if err != nil {
		t.Fatalf("proxy request from %s: %v", from, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestStaticDeviceByMACGroup: a device listed in clients.devices by its
// MAC with a group (the reception kiosk in a stricter group than its
// network's) is filtered by that group once a DHCP lease gives it an
// address, on DNS and the proxy alike, as the config documents ("group,
// if set, overrides the group of the device's network"). Before, the MAC
// only named the device: the network's, more lenient, group decided.
func TestStaticDeviceByMACGroup(t *testing.T) {
	upstream := testUpstream(t)
	cfg := strings.Replace(identityConfig(upstream, "", `
  dhcp_leases:
    - {path: "{{dir}}/dnsmasq.leases", format: dnsmasq}
`), "  default_group: staff\n", `  default_group: staff
  devices:
    - {name: RECEPTION-KIOSK, mac: "3C-22-FB-12-34-56", group: students}
`, 1)
	path, _ := writeConfig(t, cfg, withIdentityLists(map[string]string{
		"dnsmasq.leases": "0 3c:22:fb:12:34:56 127.0.0.61 kiosk *\n0 3c:22:fb:12:34:57 127.0.0.62 staff-laptop *\n",
	}))
	s, _, _ := startServing(t, path)
	dnsAddr := s.dns.Addrs()[0].String()
	deadline := time.Now().Add(10 * time.Second)
	for s.identity.Lookup(netip.MustParseAddr("127.0.0.61"), time.Now().UnixNano()) == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if e := s.identity.Lookup(netip.MustParseAddr("127.0.0.61"), time.Now().UnixNano()); e == nil || e.Device != "RECEPTION-KIOSK" {
		t.Fatalf("the lease does not name the kiosk: %+v", e)
	}
	// The kiosk: the students' group decides (gambling blocked).
	if rc := askFrom(t, dnsAddr, "127.0.0.61", "bet.example"); rc != mdns.RcodeNameError {
		t.Errorf("DNS from the kiosk: rcode %d, want NXDOMAIN (its group, students, blocks gambling)", rc)
	}
	if code := proxyGetFrom(t, s.proxyAddr, "127.0.0.61", "http://www.bet.example/"); code != http.StatusForbidden {
		t.Errorf("proxy from the kiosk: %d, want 403", code)
	}
	// Another leased device on the same network: the network's group.
	if rc := askFrom(t, dnsAddr, "127.0.0.62", "bet.example"); rc != mdns.RcodeSuccess {
		t.Errorf("DNS from another device: rcode %d, want an answer (staff network)", rc)
	}
}
