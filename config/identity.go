package config

import (
	"net/netip"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/gatehouse-filter/gatehouse/internal/username"
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
	// LDAP checks proxy logins against the school's directory.
	LDAP IdentityLDAP `yaml:"ldap"`
	// StripRealm lists the school's own realms (its NetBIOS domain
	// "SCHOOL", its DNS realm or UPN suffix "school.local"): a RADIUS
	// User-Name or a directory login given as "SCHOOL\jsmith" or
	// "jsmith@school.local" is the user "jsmith", as clients.users, the
	// people file and the directory call the account. Names in other
	// realms are kept whole. Default none: only the school knows its own
	// realms, and stripping any realm would take an eduroam visitor's
	// "jsmith@other.ac.uk" for the school's own jsmith.
	StripRealm []string `yaml:"strip_realm"`
	// Signin is the sign-in page for devices without proxy settings
	// (signin.go).
	Signin IdentitySignin `yaml:"signin"`
}

// IdentityLDAP checks proxy logins (beside or instead of
// proxy.auth.users_file) by binding to LDAP or Active Directory as the
// user, always over TLS (ldaps:// or start_tls) verified against the
// system roots and ca_file; plain ldap:// only with plain: true (a lab).
type IdentityLDAP struct {
	URL      string `yaml:"url"`       // ldaps://dc1.school.example (or ldap:// with start_tls); empty: off
	StartTLS bool   `yaml:"start_tls"` // upgrade ldap:// with StartTLS
	Plain    bool   `yaml:"plain"`     // ldap:// without TLS: passwords in clear, a lab only
	CAFile   string `yaml:"ca_file"`   // PEM CAs trusted besides the system roots
	BaseDN   string `yaml:"base_dn"`   // where users are searched
	// UserFilter finds a user's entry, %s standing for the (escaped)
	// user name: "(sAMAccountName=%s)".
	UserFilter string `yaml:"user_filter"`
	// BindDN, without a service account: what the user binds as, %s for
	// the user name ("uid=%s,ou=people,dc=school,dc=example" or
	// "%s@school.example").
	BindDN string `yaml:"bind_dn"`
	// ServiceDN and ServicePassword (file: or env:): an account that may
	// search for users, bound before the search.
	ServiceDN       string      `yaml:"service_dn"`
	ServicePassword *Secret     `yaml:"service_password"`
	Groups          []LDAPGroup `yaml:"groups"`     // memberOf DN → Gatehouse group, first match wins
	Attributes      LDAPAttrs   `yaml:"attributes"` // which attributes name the person
	CacheTTL        Duration    `yaml:"cache_ttl"`  // how long a good login is remembered
	Timeout         Duration    `yaml:"timeout"`    // per directory operation
}

// LDAPGroup maps a directory group (its DN, as memberOf lists it) to a
// Gatehouse group.
type LDAPGroup struct {
	DN    string `yaml:"dn"`
	Group string `yaml:"group"`
}

// LDAPAttrs name the directory attributes read for a person.
type LDAPAttrs struct {
	Display string `yaml:"display"` // e.g. displayName
	Year    string `yaml:"year"`    // e.g. extensionAttribute1, employeeType
	Class   string `yaml:"class"`   // e.g. department
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
	DefaultLDAPCacheTTL   = 10 * time.Minute
	DefaultLDAPTimeout    = 10 * time.Second
)

func defaultIdentity() Identity {
	return Identity{MaxAddresses: DefaultIdentityMax, Window: Duration(DefaultIdentityWindow),
		RADIUS: IdentityRADIUS{Timeout: Duration(DefaultRADIUSTimeout)},
		LDAP: IdentityLDAP{CacheTTL: Duration(DefaultLDAPCacheTTL), Timeout: Duration(DefaultLDAPTimeout),
			Attributes: LDAPAttrs{Display: "displayName"}},
		Signin: IdentitySignin{User: DefaultSigninUser, Label: DefaultSigninLabel}}
}

func (v *validator) identitySection() {
	id := &v.c.Identity
	for i, g := range id.Groups {
		at := joinIndex("identity.groups", i)
		if strings.TrimSpace(g.Match) == "" {
			v.errf(joinKey(at, "match"), "must not be empty (e.g. \"*@students.school.example\")")
		} else if m := username.Canon(g.Match); m != g.Match {
			// Compared in user names' canonical form (package identity).
			if _, err := path.Match(m, ""); err != nil {
				v.errf(joinKey(at, "match"), "invalid pattern %q (compared as %q): %v", g.Match, m, err)
			}
		} else if _, err := path.Match(g.Match, ""); err != nil {
			v.errf(joinKey(at, "match"), "invalid pattern %q: %v", g.Match, err)
		}
		if _, ok := v.c.Groups[g.Group]; !ok {
			v.errf(joinKey(at, "group"), "no group named %q", g.Group)
		}
	}
	realms := map[string]string{}
	for i, r := range id.StripRealm {
		at := joinIndex("identity.strip_realm", i)
		switch {
		case strings.TrimSpace(r) == "":
			v.errf(at, "must not be empty: list the school's own realms (e.g. SCHOOL, school.local)")
		case strings.ContainsFunc(r, func(c rune) bool { return c <= ' ' || c == 0x7f || strings.ContainsRune(`\@/*?[]()"`, c) }):
			v.errf(at, "%q is not a realm: write a realm alone, as in SCHOOL\\jsmith or jsmith@school.local (SCHOOL, school.local)", r)
		default:
			if first, dup := realms[strings.ToLower(r)]; dup {
				v.errf(at, "realm %q is also %s", r, first)
			} else {
				realms[strings.ToLower(r)] = at
			}
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
	v.ldapSection()
	v.signinSection() // signin.go
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

func (v *validator) ldapSection() {
	l := &v.c.Identity.LDAP
	if strings.TrimSpace(l.URL) == "" {
		if l.BaseDN != "" || l.ServiceDN != "" || l.BindDN != "" || l.UserFilter != "" || len(l.Groups) > 0 {
			v.warnf("identity.ldap", "settings without url: directory logins are off")
		}
		return
	}
	u, err := url.Parse(l.URL)
	switch {
	case err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "":
		v.errf("identity.ldap.url", "invalid directory address %q (want ldaps://host[:port] or ldap://host[:port])", l.URL)
	case u.Scheme == "ldaps":
		if l.StartTLS {
			v.errf("identity.ldap.start_tls", "ldaps:// is TLS already; start_tls is for ldap://")
		}
		if l.Plain {
			v.errf("identity.ldap.plain", "ldaps:// is TLS; plain is for a lab's ldap:// only")
		}
	case u.Scheme == "ldap":
		if l.StartTLS && l.Plain {
			v.errf("identity.ldap.plain", "start_tls and plain together: choose start_tls")
		} else if !l.StartTLS && !l.Plain {
			v.errf("identity.ldap.url", "ldap:// sends passwords in clear: use ldaps://, or start_tls: true (plain: true only in a lab)")
		} else if l.Plain {
			v.warnf("identity.ldap.plain", "PLAIN LDAP: pupils' and staff passwords cross the network unencrypted; use this in a lab only, never on a school network")
		}
	default:
		v.errf("identity.ldap.url", "unknown scheme %q (want ldaps:// or ldap://)", u.Scheme)
	}
	if l.BaseDN == "" && (l.ServiceDN != "" || l.UserFilter != "") {
		v.errf("identity.ldap.base_dn", "needed to search for users (e.g. \"OU=Users,DC=school,DC=example\")")
	}
	if l.UserFilter != "" && (!strings.Contains(l.UserFilter, "%s") || !strings.HasPrefix(l.UserFilter, "(") || !strings.HasSuffix(l.UserFilter, ")")) {
		v.errf("identity.ldap.user_filter", "must be a filter in parentheses with %%s for the user name, e.g. \"(sAMAccountName=%%s)\"")
	}
	if l.BindDN != "" && !strings.Contains(l.BindDN, "%s") {
		v.errf("identity.ldap.bind_dn", "must hold %%s for the user name, e.g. \"uid=%%s,ou=people,dc=school,dc=example\" or \"%%s@school.example\"")
	}
	switch {
	case l.ServiceDN != "":
		if l.UserFilter == "" {
			v.errf("identity.ldap.user_filter", "the service account needs a filter to find users, e.g. \"(sAMAccountName=%%s)\"")
		}
		if l.ServicePassword == nil {
			v.errf("identity.ldap.service_password", "the service account needs its password (file: or env:)")
		} else {
			v.secret("identity.ldap.service_password", l.ServicePassword)
		}
	case l.BindDN == "":
		v.errf("identity.ldap", "set service_dn with user_filter (search, then bind as the user) or bind_dn (bind as the user directly)")
	}
	if l.ServiceDN == "" && l.ServicePassword != nil {
		v.errf("identity.ldap.service_dn", "service_password without service_dn")
	}
	for i, g := range l.Groups {
		at := joinIndex("identity.ldap.groups", i)
		if !strings.Contains(g.DN, "=") {
			v.errf(joinKey(at, "dn"), "want a group's DN as memberOf lists it, e.g. \"CN=Students,OU=Groups,DC=school,DC=example\"")
		}
		if _, ok := v.c.Groups[g.Group]; !ok {
			v.errf(joinKey(at, "group"), "no group named %q", g.Group)
		}
	}
	v.between("identity.ldap.cache_ttl", l.CacheTTL, 0, 24*time.Hour)
	v.between("identity.ldap.timeout", l.Timeout, time.Second, time.Minute)
}

// identityFiles checks, for config check, that the files named can be read.
func (v *validator) identityFiles() {
	id := &v.c.Identity
	if p := strings.TrimSpace(id.People); p != "" {
		v.readable("identity.people", p, "people file")
	}
	if l := id.LDAP; l.URL != "" && strings.TrimSpace(l.CAFile) != "" {
		if v.readable("identity.ldap.ca_file", l.CAFile, "CA file") {
			if _, err := LoadCertPool(l.CAFile); err != nil {
				v.errf("identity.ldap.ca_file", "%v", err)
			}
		}
	}
	v.signinFiles() // signin.go
	for i, f := range id.DHCPLeases {
		if strings.TrimSpace(f.Path) != "" {
			v.readable(joinKey(joinIndex("identity.dhcp_leases", i), "path"), f.Path, "lease file")
		}
	}
}
