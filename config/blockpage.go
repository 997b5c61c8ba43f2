package config

import (
	"net"
	"net/netip"
	"strings"
)

// BlockPageAddr is the address the DNS resolver answers for blocked names
// with block_response: blockpage: dns.block_page_ip, else the admin
// listener's address when it names a specific one that is not loopback.
// ok is false when there is none (blocked names then get 0.0.0.0).
func (c *Config) BlockPageAddr() (netip.Addr, bool) {
	if s := strings.TrimSpace(c.DNS.BlockPageIP); s != "" {
		a, err := netip.ParseAddr(s)
		return a.Unmap(), err == nil
	}
	host, _, err := net.SplitHostPort(c.Admin.Listen)
	if err != nil {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(host)
	if err != nil || a.IsUnspecified() || a.Unmap().IsLoopback() {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// AdminServesBlockPage reports whether the admin listener itself is on
// port 80 of ip (or of every address), where browsers sent to the block
// page arrive.
func (c *Config) AdminServesBlockPage(ip netip.Addr) bool {
	host, port, err := net.SplitHostPort(c.Admin.Listen)
	if err != nil || port != "80" {
		return false
	}
	if host == "" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && (a.IsUnspecified() || a.Unmap() == ip)
}

// blockPage checks that with block_response: blockpage the page can be
// reached where the DNS answer points: port 80 of the block-page address.
func (v *validator) blockPage() {
	c := v.c
	if c.DNS.BlockResponse != "blockpage" || v.bad["dns.block_page_ip"] {
		return
	}
	ip, ok := c.BlockPageAddr()
	if !ok {
		if c.DNS.BlockPageIP == "" {
			v.errf("dns.block_response", "blockpage needs dns.block_page_ip, the address clients reach Gatehouse on (admin.listen %q names no specific address, so blocked names would get 0.0.0.0 and no page)", c.Admin.Listen)
		}
		return
	}
	if strings.TrimSpace(c.Proxy.Listen) == "" {
		v.errf("dns.block_response", "blockpage needs the HTTP proxy (proxy.listen), which renders the block page")
	}
	if c.DNS.BlockPageHTTP || c.AdminServesBlockPage(ip) {
		return
	}
	at := "dns.block_page_http"
	if !v.has(at) {
		at = "dns.block_response"
	}
	v.errf(at, "with block_response: blockpage, browsers are sent to port 80 of %s, where nothing serves the block page: set dns.block_page_http: true, or admin.listen to %s",
		ip, net.JoinHostPort(ip.String(), "80"))
}
