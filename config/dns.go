package config

import (
	_ "embed"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

//go:embed hosts/dns_tunnel_allow.txt
var builtinTunnelAllowText string

// DNS configures the filtering resolver.
type DNS struct {
	Listen    []string `yaml:"listen"`    // host:port, UDP and TCP; host is an IP, localhost or empty (all)
	Upstreams []string `yaml:"upstreams"` // IP:port (a bare IP gets :53); empty = from /etc/resolv.conf (see Config.Upstreams)
	BlockTTL  Duration `yaml:"block_ttl"`
	// BlockResponse is nxdomain, null or blockpage.
	BlockResponse string `yaml:"block_response"`
	// BlockPageIP is the address answered for blocked names when
	// block_response is blockpage; empty means the admin listener's host.
	BlockPageIP string `yaml:"block_page_ip"`
	// BlockPageHTTP serves the block page on port 80 of the block-page
	// address, where browsers sent there by a block answer arrive (default
	// true; not needed when admin.listen is that address's port 80).
	BlockPageHTTP bool `yaml:"block_page_http"`

	// TLSUpstreams are DNS-over-TLS resolvers, tried after upstreams.
	TLSUpstreams []TLSUpstream `yaml:"tls_upstreams"`
	// UpstreamTimeout bounds one upstream exchange.
	UpstreamTimeout Duration `yaml:"upstream_timeout"`
	// HealthCheck is how often each upstream is probed (0 = never).
	HealthCheck Duration `yaml:"health_check"`
	// Forward sends the school's own zones to its internal servers.
	Forward []ForwardZone `yaml:"forward"`
	// GroupUpstreams gives some client groups their own resolvers in place
	// of upstreams and tls_upstreams (e.g. a family-filtered resolver for
	// guests). Forwarded zones still go to their servers.
	GroupUpstreams map[string]GroupUpstreams `yaml:"group_upstreams"`

	// MemoryLimitMiB is a soft limit on the process's Go heap (as
	// GOMEMLIMIT, which wins when set): the garbage collector works harder
	// near it instead of letting the heap double. 0 = Go's default.
	MemoryLimitMiB int `yaml:"memory_limit_mib"`

	TLS       DNSTLS       `yaml:"tls"`
	Remote    DNSRemote    `yaml:"remote"` // off-site devices (remote.go)
	Cache     DNSCache     `yaml:"cache"`
	RateLimit DNSRateLimit `yaml:"rate_limit"`
	Events    DNSEvents    `yaml:"events"`
	QueryLog  DNSQueryLog  `yaml:"query_log"`
	Tunnel    DNSTunnel    `yaml:"tunnel"`
}

// TLSUpstream is a DNS-over-TLS upstream.
type TLSUpstream struct {
	Address    string `yaml:"address"`     // IP:port (a bare IP gets :853)
	ServerName string `yaml:"server_name"` // name in its certificate
}

// GroupUpstreams are one group's resolvers: plain ones first, then
// DNS-over-TLS.
type GroupUpstreams struct {
	Upstreams    []string      `yaml:"upstreams"` // IP:port (a bare IP gets :53)
	TLSUpstreams []TLSUpstream `yaml:"tls_upstreams"`
}

// ForwardZone forwards a zone (and its subdomains) to its own servers.
type ForwardZone struct {
	Zone    string   `yaml:"zone"`
	Servers []string `yaml:"servers"` // IP:port (a bare IP gets :53)
}

// DNSTLS is the optional DNS-over-TLS listener for managed devices.
type DNSTLS struct {
	Listen []string `yaml:"listen"` // host:port, e.g. ":853"; empty = no DoT listener
	Cert   string   `yaml:"cert"`   // PEM certificate chain file
	Key    string   `yaml:"key"`    // PEM private key file
}

// DNSCache configures the shared answer cache.
type DNSCache struct {
	Entries     int      `yaml:"entries"`      // 0 turns the cache off
	MinTTL      Duration `yaml:"min_ttl"`      // answers are kept at least this long
	MaxTTL      Duration `yaml:"max_ttl"`      // and at most this long
	NegativeTTL Duration `yaml:"negative_ttl"` // cap for NXDOMAIN/NODATA (SOA minimum)
	ServeStale  Duration `yaml:"serve_stale"`  // how long past expiry an answer may be served when upstreams fail (0 = never)
	Prefetch    bool     `yaml:"prefetch"`     // refresh popular names before they expire
}

// DNSRateLimit is a token bucket per client address.
type DNSRateLimit struct {
	QPS   int `yaml:"qps"`   // sustained queries per second per client address (0 = no limit)
	Burst int `yaml:"burst"` // bucket size
}

// DNSEvents configures how blocks reach the event sink.
type DNSEvents struct {
	Collapse Duration `yaml:"collapse"` // identical queries within this window become one event with a count
	Queue    int      `yaml:"queue"`    // bounded queue; when full, low-severity events are dropped
}

// DNSQueryLog is the optional log of every query, allowed ones too. How
// long it is kept is reports.retention.query_log.
type DNSQueryLog struct {
	Enabled bool `yaml:"enabled"`
}

// DNSTunnel configures the detection of VPNs over DNS (iodine, dnscat2
// and the apps built on them): a client asking for Threshold distinct
// tunnel-like names (a long part left of the registrable domain, or type
// NULL or a private-use type) under one registrable domain within Window.
type DNSTunnel struct {
	// Action is block (report it, and answer that client's queries under
	// the domain with the block answer for BlockFor), flag (report only)
	// or off.
	Action    string   `yaml:"action"`
	Threshold int      `yaml:"threshold"`
	Window    Duration `yaml:"window"`
	BlockFor  Duration `yaml:"block_for"`
	// Allow adds domains (each covering its subdomains) whose names are
	// never counted to the built-in list (hosts/dns_tunnel_allow.txt).
	Allow []string `yaml:"allow"`
}

// dns.tunnel actions.
const (
	TunnelBlock = "block"
	TunnelFlag  = "flag"
	TunnelOff   = "off"
)

// dns.tunnel defaults.
const (
	DefaultTunnelThreshold = 30
	DefaultTunnelWindow    = time.Minute
	DefaultTunnelBlockFor  = time.Hour
	// MaxTunnelThreshold bounds the names remembered per client and
	// domain (8 bytes each; see proxy/dns/tunnel.go).
	MaxTunnelThreshold = 100
)

// BuiltinTunnelAllow is the built-in list of domains whose names are never
// counted as a DNS tunnel (services that legitimately send long names or
// data over DNS), in file order.
func BuiltinTunnelAllow() []string { return hostLines(builtinTunnelAllowText) }

// DNS defaults.
const (
	DefaultUpstreamTimeout = 2 * time.Second
	DefaultHealthCheck     = 30 * time.Second
	DefaultCacheEntries    = 100_000
	DefaultCacheMaxTTL     = 24 * time.Hour
	DefaultNegativeTTL     = time.Hour
	DefaultServeStale      = 24 * time.Hour
	DefaultRateQPS         = 1000
	DefaultRateBurst       = 2000
	DefaultEventCollapse   = time.Minute
	DefaultEventQueue      = 10_000
)

// defaultDNS is the embedded DNS section.
func defaultDNS() DNS {
	return DNS{
		Listen:          []string{DefaultDNSListen},
		BlockTTL:        Duration(DefaultBlockTTL),
		BlockResponse:   DefaultBlockResponse,
		BlockPageHTTP:   true,
		UpstreamTimeout: Duration(DefaultUpstreamTimeout),
		HealthCheck:     Duration(DefaultHealthCheck),
		Cache: DNSCache{
			Entries:     DefaultCacheEntries,
			MaxTTL:      Duration(DefaultCacheMaxTTL),
			NegativeTTL: Duration(DefaultNegativeTTL),
			ServeStale:  Duration(DefaultServeStale),
			Prefetch:    true,
		},
		RateLimit: DNSRateLimit{QPS: DefaultRateQPS, Burst: DefaultRateBurst},
		Events:    DNSEvents{Collapse: Duration(DefaultEventCollapse), Queue: DefaultEventQueue},
		Remote:    defaultRemote(),
		Tunnel: DNSTunnel{Action: TunnelBlock, Threshold: DefaultTunnelThreshold,
			Window: Duration(DefaultTunnelWindow), BlockFor: Duration(DefaultTunnelBlockFor)},
	}
}

// tlsUpstreams checks DNS-over-TLS upstreams at path (exAddr and exName
// are the examples in the messages).
func (v *validator) tlsUpstreams(path string, ups []TLSUpstream, exAddr, exName string) {
	for i, u := range ups {
		p := joinIndex(path, i)
		if !validIPPort(u.Address, 853) {
			v.errf(p+".address", "invalid upstream %q (want IP:port, e.g. %s)", u.Address, exAddr)
		}
		if strings.TrimSpace(u.ServerName) == "" {
			v.errf(p+".server_name", "the name in the upstream's certificate is needed (e.g. %s)", exName)
		}
	}
}

// dnsSection validates the parts of dns: that listeners() and upstreams()
// do not cover.
func (v *validator) dnsSection() {
	d := &v.c.DNS
	if d.BlockPageIP != "" {
		if _, err := netip.ParseAddr(d.BlockPageIP); err != nil {
			v.errf("dns.block_page_ip", "invalid address %q (want an IP address)", d.BlockPageIP)
		}
	}
	if t := d.UpstreamTimeout.D(); t < 100*time.Millisecond || t > 30*time.Second {
		v.errf("dns.upstream_timeout", "must be between 100ms and 30s")
	}
	if t := d.HealthCheck.D(); t != 0 && t < time.Second {
		v.errf("dns.health_check", "must be 0 (off) or at least 1s")
	}
	v.tlsUpstreams("dns.tls_upstreams", d.TLSUpstreams, "9.9.9.9:853", "dns.quad9.net")
	for _, g := range slices.Sorted(maps.Keys(d.GroupUpstreams)) {
		gu := d.GroupUpstreams[g]
		p := joinKey("dns.group_upstreams", g)
		if _, ok := v.c.Groups[g]; !ok {
			v.errf(p, "unknown group %q (groups: %s)", g, strings.Join(slices.Sorted(maps.Keys(v.c.Groups)), ", "))
		}
		if len(gu.Upstreams)+len(gu.TLSUpstreams) == 0 {
			v.errf(p, "give the group at least one upstream or tls_upstream")
		}
		v.plainUpstreams(p+".upstreams", gu.Upstreams)
		v.tlsUpstreams(p+".tls_upstreams", gu.TLSUpstreams, "1.1.1.3:853", "family.cloudflare-dns.com")
	}
	zones := map[string]bool{}
	for i, f := range d.Forward {
		p := joinIndex("dns.forward", i)
		z := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(f.Zone), "."))
		switch {
		case z == "":
			v.errf(p+".zone", "a zone is needed (e.g. school.internal)")
		case zones[z]:
			v.errf(p+".zone", "zone %q is forwarded twice", f.Zone)
		}
		zones[z] = true
		if len(f.Servers) == 0 {
			v.errf(p+".servers", "at least one server is needed")
		}
		for j, s := range f.Servers {
			if !validIPPort(s, 53) {
				v.errf(joinIndex(p+".servers", j), "invalid server %q (want IP:port, e.g. 10.0.0.10:53)", s)
			}
		}
	}
	t := d.TLS
	if len(t.Listen) > 0 || t.Cert != "" || t.Key != "" {
		if len(t.Listen) == 0 {
			v.errf("dns.tls.listen", "cert and key are set but no listen address (e.g. \":853\")")
		}
		for i, a := range t.Listen {
			v.listenAddr(joinIndex("dns.tls.listen", i), a)
		}
		for _, k := range []struct{ path, file string }{{"dns.tls.cert", t.Cert}, {"dns.tls.key", t.Key}} {
			if k.file == "" {
				v.errf(k.path, "needed for the DNS-over-TLS listener")
			} else if _, err := os.Stat(k.file); err != nil {
				v.errf(k.path, "cannot read %s: %v", k.file, err)
			}
		}
	}
	v.remoteSection()
	if m := d.MemoryLimitMiB; m != 0 && (m < 32 || m > 1<<20) {
		v.errf("dns.memory_limit_mib", "must be 0 (Go's default) or between 32 and 1048576")
	}
	c := d.Cache
	if c.Entries < 0 || c.Entries > 10_000_000 {
		v.errf("dns.cache.entries", "must be between 0 (off) and 10000000")
	}
	if c.MaxTTL.D() > 7*24*time.Hour {
		v.errf("dns.cache.max_ttl", "must be at most 7d")
	}
	if c.MaxTTL != 0 && c.MinTTL > c.MaxTTL {
		v.errf("dns.cache.min_ttl", "must not be above max_ttl (%s)", time.Duration(c.MaxTTL))
	}
	if c.MinTTL.D() > time.Hour {
		v.errf("dns.cache.min_ttl", "must be at most 1h (longer defeats schedules and unblocks)")
	}
	if c.ServeStale.D() > 7*24*time.Hour {
		v.errf("dns.cache.serve_stale", "must be at most 7d (RFC 8767 suggests 1 to 3 days)")
	}
	r := d.RateLimit
	if r.QPS < 0 {
		v.errf("dns.rate_limit.qps", "must not be negative (0 turns the limit off)")
	} else if r.QPS > 0 && r.QPS < 50 {
		v.errf("dns.rate_limit.qps", "%d q/s would stall a classroom behind NAT; use at least 50 (or 0 for no limit)", r.QPS)
	}
	if r.QPS > 0 && r.Burst < r.QPS {
		v.errf("dns.rate_limit.burst", "must be at least qps (%d)", r.QPS)
	}
	if w := d.Events.Collapse.D(); w > time.Hour {
		v.errf("dns.events.collapse", "must be at most 1h")
	}
	if q := d.Events.Queue; q < 100 || q > 1_000_000 {
		v.errf("dns.events.queue", "must be between 100 and 1000000")
	}
	v.tunnelSection()
}

// tunnelSection validates dns.tunnel.
func (v *validator) tunnelSection() {
	t := &v.c.DNS.Tunnel
	switch t.Action {
	case TunnelBlock, TunnelFlag, TunnelOff:
	default:
		v.errf("dns.tunnel.action", "unknown action %q (want block, flag or off)", t.Action)
	}
	if t.Threshold < 5 || t.Threshold > MaxTunnelThreshold {
		v.errf("dns.tunnel.threshold", "must be between 5 and %d names", MaxTunnelThreshold)
	}
	v.between("dns.tunnel.window", t.Window, time.Second, time.Hour)
	v.between("dns.tunnel.block_for", t.BlockFor, time.Minute, 7*24*time.Hour)
	v.checkHostList("dns.tunnel.allow", t.Allow)
}

// validIPPort reports whether s is IP:port or a bare IP (which gets def).
func validIPPort(s string, def int) bool {
	_, err := NormalizeIPPort(s, def)
	return err == nil
}

// NormalizeIPPort turns "IP" or "IP:port" into netip form, giving a bare
// IP the port def.
func NormalizeIPPort(s string, def int) (netip.AddrPort, error) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return netip.AddrPortFrom(a.Unmap(), uint16(def)), nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, err
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return netip.AddrPort{}, strconv.ErrRange
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(p)), nil
}
