package config

import (
	"net/netip"
	"path"
	"strings"
	"time"
)

// Identity configures who is behind an address (package identity): the
// sources Gatehouse listens to and how a user name maps to a group.
type Identity struct {
	// Groups map user names to Gatehouse groups, first match wins; a user
	// named in clients.users keeps that group.
	Groups []IdentityGroup `yaml:"groups"`
	// People is a CSV file "user,display name,year,class" (an export from
	// the school's MIS or directory) naming users in reports; re-read
	// when it changes.
	People string `yaml:"people"`
	// MaxAddresses bounds the addresses the identity table holds.
	MaxAddresses int `yaml:"max_addresses"`
	// Window makes a block from an address one person's incident with the
	// named user's block that follows within it (a DNS lookup, then the
	// proxy login): 0 turns it off.
	Window     Duration       `yaml:"window"`
	RADIUS     IdentityRADIUS `yaml:"radius"`
	DHCPLeases []LeaseFile    `yaml:"dhcp_leases"`
}

// IdentityGroup maps user names matching Match (a shell pattern such as
// "*@students.school.example", compared without case) to Group.
type IdentityGroup struct {
	Match string `yaml:"match"`
	Group string `yaml:"group"`
}

// IdentityRADIUS is the RADIUS accounting listener (802.1X Wi-Fi).
type IdentityRADIUS struct {
	Listen  string         `yaml:"listen"` // UDP host:port, e.g. 10.0.0.5:1813; empty: off
	Secret  *Secret        `yaml:"secret"` // the shared secret, file: or env:
	NAS     []netip.Prefix `yaml:"nas"`    // the controllers and switches allowed to send accounting
	Timeout Duration       `yaml:"timeout"`
}

// LeaseFile is a DHCP server's lease file.
type LeaseFile struct {
	Path   string `yaml:"path"`
	Format string `yaml:"format"` // isc, kea or dnsmasq
}

// Identity defaults.
const (
	DefaultIdentityMax    = 65536
	DefaultIdentityWindow = 2 * time.Minute
	DefaultRADIUSTimeout  = 2 * time.Hour
)

func defaultIdentity() Identity {
	return Identity{MaxAddresses: DefaultIdentityMax, Window: Duration(DefaultIdentityWindow),
		RADIUS: IdentityRADIUS{Timeout: Duration(DefaultRADIUSTimeout)}}
}

func (v *validator) identitySection() {
	id := &v.c.Identity
	for i, g := range id.Groups {
		at := joinIndex("identity.groups", i)
		if strings.TrimSpace(g.Match) == "" {
			v.errf(joinKey(at, "match"), "must not be empty (e.g. \"*@students.school.example\")")
		} else if _, err := path.Match(g.Match, ""); err != nil {
			v.errf(joinKey(at, "match"), "invalid pattern %q: %v", g.Match, err)
		}
		if _, ok := v.c.Groups[g.Group]; !ok {
			v.errf(joinKey(at, "group"), "no group named %q", g.Group)
		}
	}
	if id.MaxAddresses < 1024 || id.MaxAddresses > 1<<20 {
		v.errf("identity.max_addresses", "must be between 1024 and 1048576")
	}
	v.between("identity.window", id.Window, 0, time.Hour)
	r := &id.RADIUS
	if r.Listen != "" {
		v.listenAddr("identity.radius.listen", r.Listen)
		if r.Secret == nil {
			v.errf("identity.radius.secret", "the listener needs the shared secret (file: or env:)")
		} else {
			v.secret("identity.radius.secret", r.Secret)
		}
		if len(r.NAS) == 0 {
			v.errf("identity.radius.nas", "list the controllers and switches allowed to send accounting (addresses or networks)")
		}
		v.between("identity.radius.timeout", r.Timeout, time.Minute, 7*24*time.Hour)
	} else if r.Secret != nil || len(r.NAS) > 0 {
		v.warnf("identity.radius", "secret or nas without listen: the RADIUS listener is off")
	}
	for i, n := range r.NAS {
		at := joinIndex("identity.radius.nas", i)
		if !n.IsValid() {
			v.errf(at, "empty network")
		} else if n.Bits() == 0 {
			v.errf(at, "%s would take accounting from anyone; list the controllers", n)
		}
	}
	seen := map[string]string{}
	for i, f := range id.DHCPLeases {
		at := joinIndex("identity.dhcp_leases", i)
		if strings.TrimSpace(f.Path) == "" {
			v.errf(joinKey(at, "path"), "must not be empty")
		} else if first, dup := seen[f.Path]; dup {
			v.errf(joinKey(at, "path"), "%s is also %s", f.Path, first)
		} else {
			seen[f.Path] = at
		}
		switch f.Format {
		case "isc", "kea", "dnsmasq":
		default:
			v.errf(joinKey(at, "format"), "unknown lease file format %q (want isc, kea or dnsmasq)%s", f.Format, didYouMean(f.Format, []string{"isc", "kea", "dnsmasq"}))
		}
	}
}

// identityFiles checks, for config check, that the files named can be read.
func (v *validator) identityFiles() {
	id := &v.c.Identity
	if p := strings.TrimSpace(id.People); p != "" {
		v.readable("identity.people", p, "people file")
	}
	for i, f := range id.DHCPLeases {
		if strings.TrimSpace(f.Path) != "" {
			v.readable(joinKey(joinIndex("identity.dhcp_leases", i), "path"), f.Path, "lease file")
		}
	}
}
