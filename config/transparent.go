package config

import (
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/gatehouse-filter/gatehouse/blocklists"
)

// ProxyTransparent configures transparent interception: the school's
// firewall redirects pupils' port 80 and 443 traffic to these listeners
// (nftables rules in the README), for devices that cannot be given the
// explicit proxy. Both are off (empty) by default.
type ProxyTransparent struct {
	// HTTPListen receives redirected port-80 traffic; HTTPSListen
	// redirected port-443 traffic. Empty: not served.
	HTTPListen  string `yaml:"http_listen"`
	HTTPSListen string `yaml:"https_listen"`
	// Allow lists the networks that may use the transparent listeners (the
	// pupil VLANs whose traffic is redirected). Empty: clients.allow. Every
	// network must lie inside clients.allow.
	Allow []netip.Prefix `yaml:"allow"`
	// NoSNI is what happens to HTTPS whose site cannot be named: a
	// ClientHello without a server name, or one with Encrypted Client
	// Hello whose outer name is an ECH front (ECHNames). block (default:
	// closed, recorded as a bypass attempt) or allow (tunnelled to the
	// address it was sent to, recorded the same way).
	NoSNI string `yaml:"no_sni"`
	// NoSNIGroups overrides NoSNI for groups named here (e.g. staff: allow).
	NoSNIGroups map[string]string `yaml:"no_sni_groups"`
	// ECHNames are the public names ECH providers put in the outer
	// ClientHello (Cloudflare: cloudflare-ech.com). A ClientHello with
	// the ECH extension is decided on its outer name, as every browser's
	// GREASE ECH carries the real one; only an outer name listed here
	// (or a subdomain) means the real site is hidden, and NoSNI applies.
	ECHNames []string `yaml:"ech_names"`
}

// Values of proxy.transparent.no_sni.
const (
	NoSNIBlock = "block"
	NoSNIAllow = "allow"
)

// DefaultECHNames are the default proxy.transparent.ech_names.
var DefaultECHNames = []string{"cloudflare-ech.com"}

func defaultTransparent() ProxyTransparent {
	return ProxyTransparent{NoSNI: NoSNIBlock, ECHNames: slices.Clone(DefaultECHNames)}
}

// NoSNIFor is the no_sni policy for a group.
func (t *ProxyTransparent) NoSNIFor(group string) string {
	if m, ok := t.NoSNIGroups[group]; ok && m != "" {
		return m
	}
	if t.NoSNI == "" {
		return NoSNIBlock
	}
	return t.NoSNI
}

// IsECHName reports whether host (normalised) is an ECH front name or a
// subdomain of one.
func (t *ProxyTransparent) IsECHName(host string) bool {
	for _, n := range t.ECHNames {
		if host == n || (len(host) > len(n) && strings.HasSuffix(host, n) && host[len(host)-len(n)-1] == '.') {
			return true
		}
	}
	return false
}

// TransparentClients are the networks that may use the transparent
// listeners: proxy.transparent.allow, else clients.allow.
func (c *Config) TransparentClients() []netip.Prefix {
	if len(c.Proxy.Transparent.Allow) > 0 {
		return c.Proxy.Transparent.Allow
	}
	return c.Clients.Allow
}

// transparent validates proxy.transparent (its listen addresses are
// checked with the other listeners).
func (v *validator) transparent() {
	t := &v.c.Proxy.Transparent
	on := t.HTTPListen != "" || t.HTTPSListen != ""
	if on && strings.TrimSpace(v.c.Proxy.Listen) == "" {
		at := "proxy.transparent.http_listen"
		if t.HTTPListen == "" {
			at = "proxy.transparent.https_listen"
		}
		v.errf(at, "needs the HTTP proxy (proxy.listen), which serves the transparent listeners")
	}
	for i, n := range t.Allow {
		path := joinIndex("proxy.transparent.allow", i)
		switch {
		case !n.IsValid():
			v.errf(path, "empty network")
		case n.Bits() == 0:
			v.errf(path, "%s would let anyone use the filter (never an open proxy); list the pupil networks whose traffic is redirected", n)
		case !v.allowed(n):
			v.errf(path, "%s is not inside clients.allow: Gatehouse serves only clients.allow", n)
		}
	}
	mode := func(at, s string) string {
		s = strings.ToLower(strings.TrimSpace(s))
		if s != NoSNIBlock && s != NoSNIAllow {
			v.errf(at, "unknown value %q (want block or allow)", s)
		}
		return s
	}
	t.NoSNI = mode("proxy.transparent.no_sni", t.NoSNI)
	groups := slices.Sorted(maps.Keys(v.c.Groups))
	for _, g := range slices.Sorted(maps.Keys(t.NoSNIGroups)) {
		at := joinKey("proxy.transparent.no_sni_groups", g)
		if _, ok := v.c.Groups[g]; !ok {
			v.errf(at, "no group named %q%s", g, didYouMean(g, groups))
		}
		t.NoSNIGroups[g] = mode(at, t.NoSNIGroups[g])
	}
	for i, n := range t.ECHNames {
		path := joinIndex("proxy.transparent.ech_names", i)
		h, err := blocklists.NormalizeHost(strings.TrimSpace(n))
		if err != nil || !strings.Contains(h, ".") || net.ParseIP(h) != nil {
			v.errf(path, "invalid name %q (want an ECH provider's public name, e.g. cloudflare-ech.com)", n)
			continue
		}
		t.ECHNames[i] = h
	}
}
