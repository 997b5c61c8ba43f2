package config

import (
	"net/netip"
	"time"

	"github.com/gatehouse-filter/gatehouse/blocklists"
)

// Built-in defaults. They are safe and work with no network and no file:
// every listener is on loopback, upstream DNS comes from /etc/resolv.conf,
// and the only lists are the ones the blocklists package embeds. The
// restricted tier (IWF, CTIRU) and dns-canary are enforced by the policy
// engine for every group, so no group lists them.
const (
	DefaultSchoolName    = "Our school"
	DefaultTimezone      = "Europe/London"
	DefaultDatabase      = "./gatehouse.db"
	DefaultDNSListen     = "127.0.0.1:5353"
	DefaultProxyListen   = "127.0.0.1:3128"
	DefaultAdminListen   = "127.0.0.1:9153"
	DefaultBlockTTL      = 60 * time.Second
	DefaultBlockResponse = "nxdomain"
	DefaultGroup         = "students"
	DefaultResolvConf    = "/etc/resolv.conf"
)

// DefaultAllow is the default client ACL: loopback and the private,
// carrier-grade NAT, unique-local and link-local ranges.
var DefaultAllow = []string{
	"127.0.0.0/8", "::1/128",
	"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
	"100.64.0.0/10", "169.254.0.0/16",
	"fc00::/7", "fe80::/10",
}

// Default returns the embedded defaults: the configuration Gatehouse runs
// with when there is no file. Each call returns a new Config.
func Default() *Config {
	c := defaults()
	c.normalize()
	return c
}

// defaults builds the default Config without normalising it; Parse overlays
// the file on it.
func defaults() *Config {
	allow := make([]netip.Prefix, len(DefaultAllow))
	for i, s := range DefaultAllow {
		allow[i] = netip.MustParsePrefix(s)
	}
	inappropriate := blocklists.SetOfKind(blocklists.KindInappropriate)
	bypass := blocklists.SetOfKind(blocklists.KindBypass)
	pupils := inappropriate | bypass | blocklists.SetOf(blocklists.Dating)
	return &Config{
		School:   School{Name: DefaultSchoolName, Timezone: DefaultTimezone},
		Log:      Log{Level: "info", Format: "text"},
		Database: DefaultDatabase,
		DNS:      defaultDNS(),
		Reports:  defaultReports(),
		Proxy:    defaultProxy(),
		Admin:    Admin{Listen: DefaultAdminListen},
		Console:  defaultConsole(),
		Identity: defaultIdentity(),
		Clients: Clients{
			Allow:        allow,
			DefaultGroup: DefaultGroup,
		},
		Groups: map[string]*Group{
			"students": {
				Description: "Pupils: all inappropriate content, filter bypass tools and dating blocked; strict safe search",
				Block:       categoryNames(pupils),
				SafeSearch:  "strict",
			},
			"staff": {
				Description: "Staff: inappropriate content and filter bypass tools blocked; moderate safe search",
				Block:       categoryNames(inappropriate | bypass),
				SafeSearch:  "moderate",
			},
			"guests": {
				Description: "Visitors and their own devices: filtered like pupils",
				Block:       categoryNames(pupils),
				SafeSearch:  "strict",
			},
		},
	}
}

func categoryNames(s blocklists.CategorySet) []string {
	cs := s.Slice()
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.String()
	}
	return out
}
