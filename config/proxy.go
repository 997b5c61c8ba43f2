package config

import (
	"maps"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-filter/gatehouse/blocklists"
)

// Proxy configures the HTTP proxy.
type Proxy struct {
	Listen    string         `yaml:"listen"`
	Timeouts  ProxyTimeouts  `yaml:"timeouts"`
	Limits    ProxyLimits    `yaml:"limits"`
	Connect   ProxyConnect   `yaml:"connect"`
	HTTP      ProxyHTTP      `yaml:"http"`
	Auth      ProxyAuth      `yaml:"auth"`
	BlockPage ProxyBlockPage `yaml:"block_page"`
	PAC       ProxyPAC       `yaml:"pac"`
	Events    ProxyEvents    `yaml:"events"`
	Inspect   ProxyInspect   `yaml:"inspect"`
	// ContentCheck: the real-time content check (content.go).
	ContentCheck ProxyContentCheck `yaml:"content_check"`
	// Transparent: listeners for traffic the firewall redirects (transparent.go).
	Transparent ProxyTransparent `yaml:"transparent"`
	// UpstreamCAFile is a PEM file of extra CAs (the school's intranet CA)
	// trusted for sites' certificates besides the system roots. Upstream
	// TLS is always verified, chain and name.
	UpstreamCAFile string `yaml:"upstream_ca_file"`
}

// ProxyTimeouts bounds every phase of a proxied request.
type ProxyTimeouts struct {
	Header   Duration `yaml:"header"`   // a client must send a request's headers within this (slow clients are cut off)
	Idle     Duration `yaml:"idle"`     // an idle keep-alive client connection is closed after this
	Dial     Duration `yaml:"dial"`     // connecting to a site
	Response Duration `yaml:"response"` // a site must start answering within this
	Tunnel   Duration `yaml:"tunnel"`   // a CONNECT tunnel with no traffic either way is closed after this
}

// ProxyLimits caps concurrent client connections and sizes the upstream
// connection pool.
type ProxyLimits struct {
	Connections int `yaml:"connections"`   // all clients together
	PerClient   int `yaml:"per_client"`    // one client address (a classroom can share one behind NAT)
	IdlePerSite int `yaml:"idle_per_site"` // idle upstream connections kept per site
	// IdleTotal caps idle upstream connections over all sites; the least
	// recently used is closed to make room.
	IdleTotal int `yaml:"idle_total"`
}

// ProxyConnect says which CONNECT tunnels are normal. Anything else is a
// filter-bypass attempt: refused and reported.
type ProxyConnect struct {
	Ports []int `yaml:"ports"` // ports tunnels may go to (443 and the school's own)
	// IPNetworks are networks that may be reached by IP address (the
	// school's own servers); a tunnel to any other bare IP address is a
	// bypass attempt. They are also the only non-public networks (private,
	// CGNAT, unique-local) a tunnel may reach by name; see ProxyHTTP.
	IPNetworks []netip.Prefix `yaml:"ip_networks"`
	// NonTLS is what happens to a tunnel whose first bytes are not a TLS
	// ClientHello: block (close it and report) or flag (report only).
	NonTLS string `yaml:"non_tls"`
}

// ProxyHTTP says where plain-HTTP requests (http:// URLs, WebSocket
// upgrades, https:// URLs sent as plain requests) may go. Public addresses
// are reachable on Ports; loopback, link-local, unspecified, multicast and
// broadcast addresses and Gatehouse's own listeners never are, and private
// ones (RFC 1918, CGNAT 100.64/10, unique-local fc00::/7) only inside
// IPNetworks. The check is made on the address actually dialled, after the
// name is resolved.
type ProxyHTTP struct {
	Ports []int `yaml:"ports"` // ports plain requests may go to
	// IPNetworks are the non-public networks plain requests may reach (the
	// school's intranet). A loopback or link-local network is honoured only
	// when listed whole or in part by itself (127.0.0.0/8, never 0.0.0.0/1):
	// that is for tests and benchmarks whose sites run on the same machine.
	IPNetworks []netip.Prefix `yaml:"ip_networks"`
}

// ProxyAuth configures proxy logins (HTTP Basic over the proxy
// connection). Which groups must log in is set per group (proxy_login).
type ProxyAuth struct {
	// UsersFile holds "name:bcrypt-hash" lines (as `htpasswd -B` writes);
	// a user's group comes from clients.users.
	UsersFile string `yaml:"users_file"`
	Realm     string `yaml:"realm"` // shown in the browser's login box
	// LoginTTL is how long a login names its client address (DNS events
	// and transparent traffic too) after the last request that carried
	// it: a browser sends the login with every proxied request, so while
	// its user browses the login stays; on a shared PC the next pupil is
	// not taken for the teacher for long (default 30 minutes).
	LoginTTL Duration `yaml:"login_ttl"`
}

// ProxyBlockPage configures the page shown for blocked sites.
type ProxyBlockPage struct {
	Contact string `yaml:"contact"` // who to ask for help, in plain words
	AUPURL  string `yaml:"aup_url"` // the school's acceptable-use policy
	// Rules maps a category to the acceptable-use rule it relates to; the
	// kind's built-in wording is used for categories not listed.
	Rules map[string]string `yaml:"rules"`
	// ReportsPerHour caps "report a mistake" forms per client address.
	ReportsPerHour int `yaml:"reports_per_hour"`
}

// ProxyPAC configures the proxy auto-config file (/proxy.pac, /wpad.dat).
type ProxyPAC struct {
	// ProxyAddress is the host:port browsers use to reach the proxy; empty
	// means the host they fetched the PAC file from and the listen port.
	ProxyAddress string `yaml:"proxy_address"`
	// Direct lists the school's internal domains (and their subdomains),
	// which browsers reach without the proxy.
	Direct []string `yaml:"direct"`
}

// ProxyEvents configures the proxy's events.
type ProxyEvents struct {
	Collapse   Duration `yaml:"collapse"`    // identical requests from one client within this window become one event
	LogAllowed bool     `yaml:"log_allowed"` // record allowed requests too (full logging)
}

// Proxy defaults.
const (
	DefaultProxyHeaderTimeout   = 10 * time.Second
	DefaultProxyIdleTimeout     = 90 * time.Second
	DefaultProxyDialTimeout     = 10 * time.Second
	DefaultProxyResponseTimeout = 60 * time.Second
	DefaultProxyTunnelTimeout   = 10 * time.Minute
	DefaultProxyConnections     = 20_000
	DefaultProxyPerClient       = 2_000
	DefaultProxyIdlePerSite     = 256
	DefaultProxyIdleTotal       = 512
	DefaultProxyNonTLS          = "block"
	DefaultProxyRealm           = "School web filter"
	DefaultProxyLoginTTL        = 30 * time.Minute
	DefaultProxyReportsPerHour  = 10
)

// DefaultProxyHTTPPorts are the ports plain-HTTP requests may go to.
var DefaultProxyHTTPPorts = []int{80, 8080, 443}

// defaultProxy is the embedded proxy section.
func defaultProxy() Proxy {
	return Proxy{
		Listen: DefaultProxyListen,
		Timeouts: ProxyTimeouts{
			Header:   Duration(DefaultProxyHeaderTimeout),
			Idle:     Duration(DefaultProxyIdleTimeout),
			Dial:     Duration(DefaultProxyDialTimeout),
			Response: Duration(DefaultProxyResponseTimeout),
			Tunnel:   Duration(DefaultProxyTunnelTimeout),
		},
		Limits: ProxyLimits{
			Connections: DefaultProxyConnections,
			PerClient:   DefaultProxyPerClient,
			IdlePerSite: DefaultProxyIdlePerSite,
			IdleTotal:   DefaultProxyIdleTotal,
		},
		Connect:   ProxyConnect{Ports: []int{443}, NonTLS: DefaultProxyNonTLS},
		HTTP:      ProxyHTTP{Ports: slices.Clone(DefaultProxyHTTPPorts)},
		Auth:      ProxyAuth{Realm: DefaultProxyRealm, LoginTTL: Duration(DefaultProxyLoginTTL)},
		BlockPage: ProxyBlockPage{ReportsPerHour: DefaultProxyReportsPerHour},
		Events:    ProxyEvents{Collapse: Duration(DefaultEventCollapse)},
		Inspect:   ProxyInspect{LeafCache: DefaultLeafCache},

		ContentCheck: ProxyContentCheck{MaxBytes: DefaultContentMaxBytes},

		Transparent: defaultTransparent(),
	}
}

// proxySection validates the parts of proxy: that listeners() does not
// cover.
func (v *validator) proxySection() {
	p := &v.c.Proxy
	p.Connect.NonTLS = strings.ToLower(strings.TrimSpace(p.Connect.NonTLS))
	t := p.Timeouts
	v.between("proxy.timeouts.header", t.Header, time.Second, 2*time.Minute)
	v.between("proxy.timeouts.idle", t.Idle, time.Second, time.Hour)
	v.between("proxy.timeouts.dial", t.Dial, 100*time.Millisecond, time.Minute)
	v.between("proxy.timeouts.response", t.Response, time.Second, 10*time.Minute)
	v.between("proxy.timeouts.tunnel", t.Tunnel, 10*time.Second, 24*time.Hour)

	l := p.Limits
	if l.Connections < 10 || l.Connections > 1_000_000 {
		v.errf("proxy.limits.connections", "must be between 10 and 1000000")
	}
	switch {
	case l.PerClient < 10:
		v.errf("proxy.limits.per_client", "%d connections would stall one browser (it opens several per site); use at least 10", l.PerClient)
	case l.PerClient > l.Connections && l.Connections >= 10:
		v.errf("proxy.limits.per_client", "must not be above connections (%d)", l.Connections)
	}
	if l.IdlePerSite < 2 || l.IdlePerSite > 10_000 {
		v.errf("proxy.limits.idle_per_site", "must be between 2 and 10000")
	}
	if l.IdleTotal < 2 || l.IdleTotal > 100_000 {
		v.errf("proxy.limits.idle_total", "must be between 2 and 100000")
	}

	c := p.Connect
	v.ports("proxy.connect.ports", c.Ports, "at least one port is needed (443 for HTTPS)")
	v.upstreamNetworks("proxy.connect.ip_networks", c.IPNetworks, "tunnels")
	v.ports("proxy.http.ports", p.HTTP.Ports, "at least one port is needed (80 for plain HTTP)")
	v.upstreamNetworks("proxy.http.ip_networks", p.HTTP.IPNetworks, "plain HTTP requests")
	if c.NonTLS != "block" && c.NonTLS != "flag" {
		v.errf("proxy.connect.non_tls", "unknown value %q (want block or flag)", c.NonTLS)
	}

	a := p.Auth
	login := []string{}
	for _, name := range slices.Sorted(maps.Keys(v.c.Groups)) {
		if v.c.Groups[name].ProxyLogin {
			login = append(login, name)
		}
	}
	// The users file is read when the proxy starts (and on reload), as
	// list files are; here only its presence is checked.
	if strings.TrimSpace(a.UsersFile) == "" && strings.TrimSpace(v.c.Identity.LDAP.URL) == "" && len(login) > 0 {
		v.errf(joinKey(joinKey("groups", login[0]), "proxy_login"), "needs proxy.auth.users_file or identity.ldap (the users who can log in)")
	}
	if strings.TrimSpace(a.Realm) == "" || strings.ContainsAny(a.Realm, "\"\\\r\n") {
		v.errf("proxy.auth.realm", "must be a short name without quotes, backslashes or line breaks")
	}
	v.between("proxy.auth.login_ttl", a.LoginTTL, time.Minute, 7*24*time.Hour)

	b := p.BlockPage
	if b.AUPURL != "" {
		if u, err := url.Parse(b.AUPURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.errf("proxy.block_page.aup_url", "invalid address %q (want an http:// or https:// URL)", b.AUPURL)
		}
	}
	if len(b.Contact) > 200 {
		v.errf("proxy.block_page.contact", "must be at most 200 characters")
	}
	for _, name := range slices.Sorted(maps.Keys(b.Rules)) {
		path := joinKey("proxy.block_page.rules", name)
		cat, ok := v.category(path, name)
		switch {
		case !ok:
		case cat.Restricted():
			v.errf(path, "the restricted tier always shows the standard page, without a category or rule")
		case cat.Info().Kind == blocklists.KindMarker:
			v.errf(path, "%s is never blocked, so it has no block page", name)
		case strings.TrimSpace(b.Rules[name]) == "":
			v.errf(path, "empty rule")
		}
	}
	if b.ReportsPerHour < 1 || b.ReportsPerHour > 1000 {
		v.errf("proxy.block_page.reports_per_hour", "must be between 1 and 1000")
	}

	if pa := p.PAC.ProxyAddress; pa != "" {
		host, port, err := net.SplitHostPort(pa)
		n, perr := strconv.Atoi(port)
		if err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			v.errf("proxy.pac.proxy_address", "invalid address %q (want host:port as browsers reach the proxy, e.g. proxy.school.internal:3128)", pa)
		} else if a, err := netip.ParseAddr(host); err == nil && a.IsUnspecified() {
			v.errf("proxy.pac.proxy_address", "%s is not an address browsers can reach", host)
		}
	}
	for i, d := range p.PAC.Direct {
		path := joinIndex("proxy.pac.direct", i)
		n, err := blocklists.NormalizeHost(strings.TrimPrefix(strings.TrimSpace(d), "*."))
		if err != nil || strings.Contains(d, "/") {
			v.errf(path, "invalid domain %q (want a domain such as school.internal)", d)
		} else if !strings.Contains(n, ".") {
			v.errf(path, "%q is a top-level domain; name the school's own domain", d)
		}
	}
	if w := p.Events.Collapse.D(); w > time.Hour {
		v.errf("proxy.events.collapse", "must be at most 1h")
	}
}

// ports checks a list of upstream ports.
func (v *validator) ports(at string, ports []int, none string) {
	if len(ports) == 0 {
		v.errf(at, "%s", none)
	}
	seen := map[int]bool{}
	for i, port := range ports {
		path := joinIndex(at, i)
		switch {
		case port < 1 || port > 65535:
			v.errf(path, "invalid port %d", port)
		case seen[port]:
			v.errf(path, "port %d is listed twice", port)
		case port == 25 || port == 53 || port == 853:
			v.errf(path, "port %d carries mail or DNS, which must not go through the proxy", port)
		}
		seen[port] = true
	}
}

// upstreamNetworks checks proxy.connect.ip_networks or
// proxy.http.ip_networks. A loopback or link-local network opens services
// on the Gatehouse machine itself (or the cloud metadata address) to
// clients, so it is allowed with a warning: it is for tests and
// benchmarks.
func (v *validator) upstreamNetworks(at string, nets []netip.Prefix, who string) {
	for i, n := range nets {
		path := joinIndex(at, i)
		switch {
		case !n.IsValid():
			v.errf(path, "empty network")
		case n.Bits() == 0:
			v.errf(path, "%s would let %s reach any IP address, including the school's own network", n, who)
		case n.Addr().Unmap().IsLoopback():
			v.warnf(path, "%s lets clients of the proxy reach services on the Gatehouse machine itself (meant for tests and benchmarks)", n)
		case n.Addr().Unmap().IsLinkLocalUnicast():
			v.warnf(path, "%s lets clients of the proxy reach link-local addresses, such as a cloud server's metadata service at 169.254.169.254", n)
		}
	}
}

// adminSection checks admin.allow.
func (v *validator) adminSection() {
	for i, n := range v.c.Admin.Allow {
		path := joinIndex("admin.allow", i)
		if !n.IsValid() {
			v.errf(path, "empty network")
		} else if n.Bits() == 0 {
			v.errf(path, "%s would let anyone read the metrics; list IT's monitoring hosts", n)
		}
	}
}

// fmtDur writes a duration as the config file does ("10s", "2m", "1h", "7d").
func fmtDur(d time.Duration) string {
	b, _ := Duration(d).MarshalText()
	s := string(b)
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
