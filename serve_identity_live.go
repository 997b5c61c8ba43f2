package main

import (
	"fmt"
	"maps"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/identity"
	"github.com/gatehouse-filter/gatehouse/internal/username"
)

// What a reload changes in identity: besides identity.groups. The
// directory logins (identity.ldap), the people file and the DHCP lease
// files are each behind one pointer or lock that a reload swaps, so a
// proxy login or a lookup during a reload is decided by the old settings
// or the new, never by none. identity.radius's secret (read again at
// every reload), nas and timeout apply to the running listener; its
// address, identity.max_addresses and identity.window need a restart.

// liveLDAP is identity.ldap as the last reload left it: the directory the
// proxy checks logins against and a Directory naming logged-in users for
// the identity table. nil inside: directory logins are off.
type liveLDAP struct {
	cur    atomic.Pointer[identity.LDAP]
	realms atomic.Pointer[[]string] // identity.strip_realm
}

// Login implements the proxy's DirectoryLogin. A name in one of the
// school's realms ("SCHOOL\jsmith", "jsmith@school.local") is the
// directory's jsmith; the Person's User is the name to record.
func (l *liveLDAP) Login(name, password string) (identity.Person, error) {
	d := l.cur.Load()
	if d == nil { // turned off between the proxy's Enabled and this call
		return identity.Person{}, identity.ErrBadLogin
	}
	if r := l.realms.Load(); r != nil {
		name = username.StripRealm(name, *r)
	}
	return d.Login(name, password)
}

// Remembered answers a login from the directory's cache alone (the
// proxy's DirectoryLogin: no bind, so no wait for one), the name's realm
// stripped as Login strips it.
func (l *liveLDAP) Remembered(name, password string) (identity.Person, bool) {
	d := l.cur.Load()
	if d == nil {
		return identity.Person{}, false
	}
	if r := l.realms.Load(); r != nil {
		name = username.StripRealm(name, *r)
	}
	return d.Remembered(name, password)
}

// Enabled tells the proxy whether directory logins are on.
func (l *liveLDAP) Enabled() bool { return l.cur.Load() != nil }

// Person implements identity.Directory.
func (l *liveLDAP) Person(user string) (identity.Person, bool) {
	if d := l.cur.Load(); d != nil {
		return d.Person(user)
	}
	return identity.Person{}, false
}

// livePeople is the people file (identity.people) the last reload named;
// nil inside: none.
type livePeople struct {
	cur atomic.Pointer[identity.People]
}

// Person implements identity.Directory.
func (p *livePeople) Person(user string) (identity.Person, bool) {
	if f := p.cur.Load(); f != nil {
		return f.Person(user)
	}
	return identity.Person{}, false
}

// identityPlan is what a reload changes in identity:, prepared (files
// and secrets read, the new directory built) before anything changes, so
// that a reload that cannot be applied changes nothing.
type identityPlan struct {
	ldapChanged bool
	ldap        *identity.LDAP // the new directory; nil: off
	recheck     bool           // the directory's address, TLS, accounts, search or attributes changed

	peopleChanged bool
	people        *identity.People // read already; nil: none

	leasesChanged bool
	leaseFiles    []identity.LeaseFile
	staticMACs    map[string]string

	radius        bool // the running RADIUS listener takes these
	radiusSecret  []byte
	radiusNAS     []netip.Prefix
	radiusTimeout time.Duration
	realms        []string // identity.strip_realm: the RADIUS listener's and the directory logins'
}

// prepareIdentity reads what cfg's identity: names that differs from old's.
func (s *server) prepareIdentity(old, cfg *config.Config) (*identityPlan, error) {
	p := &identityPlan{}
	if s.identity == nil {
		return p, nil
	}
	// A file that cannot be read now (a secret or certificate being
	// rotated) rejects the reload only if its section changed: otherwise
	// the running settings stay and the reload goes on, so that an
	// unrelated change (a list, an allow entry made in the console) is
	// never refused for it.
	cur := s.ldap.cur.Load()
	if err := p.prepareLDAP(cur, old.Identity.LDAP, cfg.Identity.LDAP); err != nil {
		if cur == nil || !reflect.DeepEqual(old.Identity.LDAP, cfg.Identity.LDAP) {
			return nil, err
		}
		s.log.Warn("identity.ldap: its files could not be read again; the running directory settings stay", "part", "identity", "err", err)
		p.ldapChanged, p.ldap = false, nil
	}
	if path := cfg.Identity.People; path != old.Identity.People {
		p.peopleChanged = true
		if path != "" {
			if _, err := os.Stat(path); err != nil {
				return nil, fmt.Errorf("identity.people: %w", err)
			}
			p.people = &identity.People{Path: path}
			for _, e := range peoplePoll(p.people) {
				s.log.Warn("people file", "part", "identity", "problem", e)
			}
		}
	}
	if r := cfg.Identity.RADIUS; s.radius != nil && r.Listen != "" && r.Secret != nil {
		secret, err := r.Secret.Read()
		switch {
		case err == nil:
			p.radius, p.radiusSecret, p.radiusNAS, p.radiusTimeout = true, []byte(secret), r.NAS, r.Timeout.D()
		case reflect.DeepEqual(old.Identity.RADIUS, r):
			s.log.Warn("identity.radius.secret could not be read again; the running secret stays", "part", "identity", "err", err)
		default:
			return nil, fmt.Errorf("identity.radius.secret: %w", err) // names the source, never the value
		}
	}
	p.realms = cfg.Identity.StripRealm
	p.leaseFiles, p.staticMACs = leaseSettings(cfg)
	oldFiles, oldMACs := leaseSettings(old)
	p.leasesChanged = !slices.Equal(p.leaseFiles, oldFiles) || !maps.Equal(p.staticMACs, oldMACs)
	return p, nil
}

func peoplePoll(p *identity.People) []string {
	_, problems := p.Poll()
	out := make([]string, len(problems))
	for i, e := range problems {
		out[i] = e.Error()
	}
	return out
}

// prepareLDAP builds the new directory if identity.ldap, the service
// account's password or the CA file's certificates changed.
func (p *identityPlan) prepareLDAP(cur *identity.LDAP, was, now config.IdentityLDAP) error {
	if now.URL == "" {
		p.ldapChanged = cur != nil
		return nil
	}
	l, err := newLDAP(now) // serve_identity.go: reads ca_file and the password
	if err != nil {
		return err
	}
	if cur == nil {
		p.ldapChanged, p.ldap = true, l
		return nil
	}
	same := cur.ServicePassword == l.ServicePassword && cur.RootCAs.Equal(l.RootCAs)
	if same && reflect.DeepEqual(was, now) {
		return nil
	}
	// Which users belong to which Gatehouse group, and for how long a
	// login is remembered, can change without asking the directory again.
	was.Groups, now.Groups, was.CacheTTL, now.CacheTTL = nil, nil, 0, 0
	p.ldapChanged, p.ldap, p.recheck = true, l, !same || !reflect.DeepEqual(was, now)
	return nil
}

// leaseSettings is the lease files and static devices' MACs of cfg.
func leaseSettings(cfg *config.Config) ([]identity.LeaseFile, map[string]string) {
	var files []identity.LeaseFile
	for _, f := range cfg.Identity.DHCPLeases {
		files = append(files, identity.LeaseFile{Path: f.Path, Format: f.Format})
	}
	macs := map[string]string{}
	for _, d := range cfg.Clients.Devices {
		if m := identity.NormalizeMAC(d.MAC); m != "" {
			macs[m] = d.Name
		}
	}
	return files, macs
}

// applyIdentity makes a prepared plan the running identity sources. The
// directory's remembered logins move to the new one (identity.LDAP.Adopt)
// and the addresses they named take the group the new mapping gives;
// the caller merges every address again afterwards (reloadIdentity).
func (s *server) applyIdentity(p *identityPlan) {
	if s.identity == nil {
		return
	}
	log := s.log.With("part", "identity")
	if p.ldapChanged {
		var groups map[string]string
		if p.ldap != nil {
			groups = p.ldap.Adopt(s.ldap.cur.Load(), p.recheck)
		}
		s.ldap.cur.Store(p.ldap)
		switch {
		case p.ldap == nil:
			log.Info("directory logins off (identity.ldap)")
		default:
			// The addresses directory logins named take the groups the
			// new mapping gives their membership (user names are in
			// their one form: see the proxy's verify).
			n := s.identity.Regroup(identity.SourceLogin, func(user string) (string, bool) {
				g, ok := groups[username.Canon(user)]
				return g, ok
			})
			log.Info("directory logins: new settings", "url", p.ldap.URL, "logins_checked_again", p.recheck, "addresses_regrouped", n)
			if p.ldap.Plain {
				log.Warn("PLAIN LDAP: proxy passwords cross the network unencrypted (identity.ldap.plain); a lab only", "url", p.ldap.URL)
			}
		}
	}
	s.ldap.realms.Store(&p.realms)
	if p.peopleChanged {
		s.people.cur.Store(p.people)
		if p.people != nil {
			log.Info("people file", "file", p.people.Path)
		}
	}
	if p.radius {
		if err := s.radius.Reconfigure(p.radiusSecret, p.radiusNAS, p.radiusTimeout, p.realms); err != nil {
			log.Error("radius: keeping the running settings", "err", err) // an empty secret: validation refuses it first
		}
	}
	if p.leasesChanged && s.leases != nil {
		for _, e := range s.leases.Reconfigure(p.leaseFiles, p.staticMACs) {
			log.Warn("dhcp lease file", "problem", e.Error())
		}
		paths := make([]string, len(p.leaseFiles))
		for i, f := range p.leaseFiles {
			paths[i] = f.Path
		}
		log.Info("dhcp lease files", "files", strings.Join(paths, ", "))
	}
}
