package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// Upstreams returns dns.upstreams or, when that is empty, the nameservers
// of /etc/resolv.conf that are not Gatehouse itself (see SystemUpstreams).
func (c *Config) Upstreams() ([]string, error) {
	if len(c.DNS.Upstreams) > 0 {
		return append([]string(nil), c.DNS.Upstreams...), nil
	}
	return SystemUpstreams(DefaultResolvConf, c.DNS.Listen)
}

// interfaceAddrs is net.InterfaceAddrs, replaceable in tests.
var interfaceAddrs = net.InterfaceAddrs

// SystemUpstreams reads the nameserver lines of a resolv.conf file and
// returns them as host:port with port 53, in file order, without
// duplicates. self lists Gatehouse's own DNS listen addresses (host:port);
// a nameserver that would send queries back to Gatehouse is left out, so
// that installing Gatehouse as the machine's resolver cannot make a loop:
//
//   - a nameserver equal to a listen address;
//   - a loopback (or 0.0.0.0 / ::) nameserver when Gatehouse listens on port
//     53 of all addresses ("", 0.0.0.0, ::) or of "localhost";
//   - one of this machine's interface addresses when Gatehouse listens on
//     port 53 of all addresses.
//
// A listener on another port (the default 127.0.0.1:5353) never matches,
// since resolv.conf nameservers are always on port 53; and a different
// loopback address is not a loop (systemd-resolved's 127.0.0.53 stays when
// Gatehouse listens on 127.0.0.1:53). It is an error if no nameserver
// remains.
func SystemUpstreams(resolvConfPath string, self []string) ([]string, error) {
	data, err := os.ReadFile(resolvConfPath)
	if err != nil {
		return nil, fmt.Errorf("reading upstream DNS servers: %w (set dns.upstreams)", err)
	}
	var out []string
	seen := map[string]bool{}
	found := 0
	var local []netip.Addr // interface addresses, read when first needed
	localRead := false
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil {
			continue
		}
		found++
		ap := netip.AddrPortFrom(a.Unmap(), 53)
		if isSelf(ap, self, func() []netip.Addr {
			if !localRead {
				local, localRead = localAddrs(), true
			}
			return local
		}) {
			continue
		}
		if s := ap.String(); !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	switch {
	case found == 0:
		return nil, fmt.Errorf("no nameserver lines in %s (set dns.upstreams)", resolvConfPath)
	case len(out) == 0:
		return nil, fmt.Errorf("every nameserver in %s is Gatehouse itself (set dns.upstreams)", resolvConfPath)
	}
	return out, nil
}

// isSelf reports whether a DNS server at c would be Gatehouse, given its
// listen addresses.
func isSelf(c netip.AddrPort, self []string, local func() []netip.Addr) bool {
	ca := c.Addr().WithZone("")
	loop := ca.IsLoopback() || ca.IsUnspecified()
	for _, s := range self {
		host, port, err := net.SplitHostPort(s)
		if err != nil {
			continue
		}
		if p, err := strconv.Atoi(port); err != nil || p != int(c.Port()) {
			continue
		}
		var all bool
		switch host {
		case "":
			all = true
		case "localhost":
			if loop {
				return true
			}
			continue
		default:
			h, err := netip.ParseAddr(host)
			if err != nil {
				continue
			}
			h = h.Unmap().WithZone("")
			if h == ca {
				return true
			}
			all = h.IsUnspecified()
		}
		if all {
			if loop {
				return true
			}
			if local != nil {
				for _, l := range local() {
					if l == ca {
						return true
					}
				}
			}
		}
	}
	return false
}

func localAddrs() []netip.Addr {
	addrs, err := interfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		var ip net.IP
		switch v := a.(type) {
		case *net.IPNet:
			ip = v.IP
		case *net.IPAddr:
			ip = v.IP
		}
		if na, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, na.Unmap())
		}
	}
	return out
}
