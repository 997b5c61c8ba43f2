package identity

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/gatehouse-filter/gatehouse/internal/username"
)

// LDAP checks proxy logins against the school's directory (OpenLDAP,
// Active Directory) by binding as the user, and reads the user's display
// name, year, class and group membership. Successful logins are cached
// for TTL (at most MaxCached users), so a browser sending its login with
// every request costs one bind per TTL. It is also a Directory: Person
// answers from the cache, so a login's mapping carries what the directory
// said.
//
// The connection is always TLS (ldaps:// or StartTLS), verified against
// RootCAs (nil: the system roots), unless Plain is set (a lab only).
type LDAP struct {
	URL      string         // ldaps://dc1.school.example or ldap://… with StartTLS or Plain
	StartTLS bool           // upgrade an ldap:// connection with StartTLS
	Plain    bool           // allow ldap:// without TLS (passwords cross the network in clear)
	RootCAs  *x509.CertPool // nil: the system roots
	BaseDN   string         // where users are searched
	// UserFilter finds the user's entry, %s standing for the escaped user
	// name: "(sAMAccountName=%s)", "(uid=%s)".
	UserFilter string
	// BindDN, without a service account, is what the user binds as, %s
	// standing for the user name: "uid=%s,ou=people,dc=school,dc=example"
	// (escaped as a DN value) or "%s@school.example" (an AD UPN; the name
	// may not hold DN or filter specials).
	BindDN string
	// ServiceDN and ServicePassword, if set, are bound first to search
	// for the user's entry with UserFilter.
	ServiceDN       string
	ServicePassword string
	// Groups map memberOf values (DNs, compared without case) to
	// Gatehouse groups; the first listed that the user is a member of wins.
	Groups                           []LDAPGroup
	DisplayAttr, YearAttr, ClassAttr string
	TTL                              time.Duration // how long a good login is remembered
	Timeout                          time.Duration // per directory operation
	MaxCached                        int           // users remembered at most (default DefaultLDAPCache)
	Now                              func() time.Time

	once  sync.Once
	salt  [16]byte
	mu    sync.Mutex
	cache map[string]ldapCached
	binds atomic.Uint64
}

// LDAPGroup maps a directory group's DN to a Gatehouse group.
type LDAPGroup struct {
	DN    string
	Group string
}

type ldapCached struct {
	digest  [32]byte
	person  Person
	member  []string  // memberOf, for a reload's group mapping (Adopt)
	since   time.Time // when the directory answered
	expires time.Time
	recheck bool // a reload changed the directory's settings: ask it again at the next login
}

// DefaultLDAPCache bounds the users an LDAP remembers.
const DefaultLDAPCache = 10000

// ErrBadLogin is Login's answer for a wrong password, an unknown user or
// a user name that could not be a real one.
var ErrBadLogin = errors.New("wrong user name or password")

// Binds is how many binds (service and user) were sent to the directory.
func (l *LDAP) Binds() uint64 { return l.binds.Load() }

func (l *LDAP) init() {
	l.once.Do(func() {
		_, _ = rand.Read(l.salt[:])
		l.cache = map[string]ldapCached{}
		if l.Now == nil {
			l.Now = time.Now
		}
		if l.MaxCached <= 0 {
			l.MaxCached = DefaultLDAPCache
		}
		if l.Timeout <= 0 {
			l.Timeout = 10 * time.Second
		}
	})
}

func (l *LDAP) digest(name, password string) [32]byte {
	h := sha256.New()
	h.Write(l.salt[:])
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write([]byte(password))
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// Person implements Directory from the logins remembered.
func (l *LDAP) Person(user string) (Person, bool) {
	l.init()
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.cache[username.Canon(user)]
	if !ok || !l.Now().Before(c.expires) {
		return Person{}, false
	}
	return c.person, true
}

// validName refuses names no directory account has and that only an
// attacker types: empty, overlong, control characters, and the filter
// specials (they are escaped anyway; refusing them costs no bind).
func validName(name string) bool {
	if name == "" || len(name) > 256 {
		return false
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || strings.ContainsRune(`*()\`, r) {
			return false
		}
	}
	return true
}

// Login checks name and password against the directory. It returns
// ErrBadLogin for a wrong password or unknown user, and another error
// (naming the problem, never the password) when the directory cannot be
// asked: the login is then neither accepted nor cached.
func (l *LDAP) Login(name, password string) (Person, error) {
	l.init()
	// The directory's spellings of one account ("Amira.Khan", "amira.khan ",
	// full-width letters) are one login, remembered under one name.
	key := username.Canon(name)
	if !validName(name) || key == "" || password == "" { // an empty password is an unauthenticated bind: it would "succeed"
		return Person{}, ErrBadLogin
	}
	if p, ok := l.Remembered(name, password); ok {
		return p, nil
	}
	d := l.digest(key, password)
	now := l.Now()
	p, member, err := l.ask(name, password)
	if err != nil {
		if errors.Is(err, ErrBadLogin) {
			l.mu.Lock()
			delete(l.cache, key) // a changed password ends the remembered one
			l.mu.Unlock()
		}
		return Person{}, err
	}
	l.mu.Lock()
	if _, held := l.cache[key]; !held && len(l.cache) >= l.MaxCached {
		l.evict(now)
	}
	p.User = key
	l.cache[key] = ldapCached{digest: d, person: p, member: member, since: now, expires: now.Add(l.TTL)}
	l.mu.Unlock()
	return p, nil
}

// Remembered answers a login from the cache alone: the Person of a good
// login with this password within TTL (not one a reload marked to be
// asked again), else false. It never asks the directory, so the proxy
// answers remembered logins without waiting for a bind.
func (l *LDAP) Remembered(name, password string) (Person, bool) {
	l.init()
	key := username.Canon(name)
	if !validName(name) || key == "" || password == "" {
		return Person{}, false
	}
	d := l.digest(key, password)
	l.mu.Lock()
	c, ok := l.cache[key]
	l.mu.Unlock()
	if ok && !c.recheck && l.Now().Before(c.expires) && subtle.ConstantTimeCompare(c.digest[:], d[:]) == 1 {
		return c.person, true
	}
	return Person{}, false
}

// evict (mu held) drops expired logins, and if none had expired the one
// that expires soonest (the oldest).
func (l *LDAP) evict(now time.Time) {
	var oldest string
	var at time.Time
	for k, v := range l.cache {
		if !now.Before(v.expires) {
			delete(l.cache, k)
			continue
		}
		if oldest == "" || v.expires.Before(at) {
			oldest, at = k, v.expires
		}
	}
	if len(l.cache) >= l.MaxCached && oldest != "" {
		delete(l.cache, oldest)
	}
}

// dial connects, with TLS verified unless Plain.
func (l *LDAP) dial() (*ldap.Conn, error) {
	u, err := url.Parse(l.URL)
	if err != nil {
		return nil, fmt.Errorf("ldap url: %w", err)
	}
	host := u.Hostname()
	tc := &tls.Config{ServerName: host, RootCAs: l.RootCAs, MinVersion: tls.VersionTLS12}
	d := &net.Dialer{Timeout: l.Timeout}
	var opts []ldap.DialOpt
	opts = append(opts, ldap.DialWithDialer(d))
	if u.Scheme == "ldaps" {
		opts = append(opts, ldap.DialWithTLSConfig(tc))
	} else if u.Scheme != "ldap" {
		return nil, fmt.Errorf("ldap url: scheme %q (want ldaps or ldap)", u.Scheme)
	}
	conn, err := ldap.DialURL(l.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("ldap: connect to %s: %w", u.Host, err)
	}
	conn.SetTimeout(l.Timeout)
	if u.Scheme == "ldap" {
		if l.StartTLS {
			if err := conn.StartTLS(tc); err != nil {
				conn.Close()
				return nil, fmt.Errorf("ldap: StartTLS with %s: %w", u.Host, err)
			}
		} else if !l.Plain {
			conn.Close()
			return nil, errors.New("ldap: ldap:// without start_tls or plain: refusing to send passwords in clear")
		}
	}
	return conn, nil
}

func (l *LDAP) bind(conn *ldap.Conn, dn, password string) error {
	l.binds.Add(1)
	return conn.Bind(dn, password)
}

func badCredentials(err error) bool {
	return ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) ||
		ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidDNSyntax) ||
		ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject)
}

func (l *LDAP) attrs() []string {
	a := []string{"memberOf"}
	for _, s := range []string{l.DisplayAttr, l.YearAttr, l.ClassAttr} {
		if s != "" {
			a = append(a, s)
		}
	}
	return a
}

func (l *LDAP) ask(name, password string) (Person, []string, error) {
	entry, err := l.askEntry(name, password)
	if err != nil {
		return Person{}, nil, err
	}
	member := entry.GetEqualFoldAttributeValues("memberOf")
	p := l.person(entry)
	p.Group = l.groupOf(member)
	return p, member, nil
}

// askEntry binds as the user and reads the user's entry.
func (l *LDAP) askEntry(name, password string) (*ldap.Entry, error) {
	conn, err := l.dial()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	filter := strings.ReplaceAll(l.UserFilter, "%s", ldap.EscapeFilter(name))
	var entry *ldap.Entry
	if l.ServiceDN != "" {
		if err := l.bind(conn, l.ServiceDN, l.ServicePassword); err != nil {
			return nil, fmt.Errorf("ldap: service account bind: %w", err)
		}
		if entry, err = l.search(conn, l.BaseDN, ldap.ScopeWholeSubtree, filter); err != nil {
			return nil, err
		}
		if err := l.bind(conn, entry.DN, password); err != nil {
			if badCredentials(err) {
				return nil, ErrBadLogin
			}
			return nil, fmt.Errorf("ldap: user bind: %w", err)
		}
	} else {
		dn := strings.ReplaceAll(l.BindDN, "%s", ldap.EscapeDN(name))
		if err := l.bind(conn, dn, password); err != nil {
			if badCredentials(err) {
				return nil, ErrBadLogin
			}
			return nil, fmt.Errorf("ldap: user bind: %w", err)
		}
		if l.UserFilter != "" {
			entry, err = l.search(conn, l.BaseDN, ldap.ScopeWholeSubtree, filter)
		} else {
			entry, err = l.search(conn, dn, ldap.ScopeBaseObject, "(objectClass=*)")
		}
		if err != nil {
			return nil, err
		}
	}
	return entry, nil
}

// search finds exactly one entry; none (or several) is ErrBadLogin.
func (l *LDAP) search(conn *ldap.Conn, base string, scope int, filter string) (*ldap.Entry, error) {
	req := ldap.NewSearchRequest(base, scope, ldap.NeverDerefAliases, 2, int(l.Timeout/time.Second), false, filter, l.attrs(), nil)
	res, err := conn.Search(req)
	if err != nil {
		if ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) || ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
			return nil, ErrBadLogin
		}
		return nil, fmt.Errorf("ldap: search for the user: %w", err)
	}
	if len(res.Entries) != 1 {
		return nil, ErrBadLogin
	}
	return res.Entries[0], nil
}

func (l *LDAP) person(e *ldap.Entry) Person {
	p := Person{}
	if l.DisplayAttr != "" {
		p.Display = e.GetAttributeValue(l.DisplayAttr)
	}
	if l.YearAttr != "" {
		p.Year = e.GetAttributeValue(l.YearAttr)
	}
	if l.ClassAttr != "" {
		p.Class = e.GetAttributeValue(l.ClassAttr)
	}
	return p
}

// groupOf is the Gatehouse group of the first of l.Groups whose DN is in
// member (memberOf values), or "".
func (l *LDAP) groupOf(member []string) string {
	for _, g := range l.Groups {
		want, err := ldap.ParseDN(g.DN)
		for _, m := range member {
			if err == nil {
				if have, err := ldap.ParseDN(m); err == nil && want.EqualFold(have) {
					return g.Group
				}
			} else if strings.EqualFold(g.DN, m) {
				return g.Group
			}
		}
	}
	return ""
}

// Adopt takes over the logins old remembers, for a config reload that
// replaces old by l; call it before l is used. Their groups are decided
// again by l.Groups and their time by l.TTL (from when the directory
// answered). With recheck (the directory's address, TLS, accounts, search
// or attributes changed) each is asked of the directory again at its
// next login; until then Person still names the user. It returns the
// group l.Groups gives each user old knows the membership of (expired
// logins too), for Table.Regroup.
func (l *LDAP) Adopt(old *LDAP, recheck bool) map[string]string {
	groups := map[string]string{}
	if old == nil {
		return groups
	}
	l.init()
	old.init()
	old.mu.Lock()
	held := make(map[string]ldapCached, len(old.cache))
	for k, c := range old.cache {
		held[k] = c
	}
	old.mu.Unlock()
	now := l.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.salt = old.salt // the digests were made with it
	for k, c := range held {
		c.person.Group = l.groupOf(c.member)
		groups[k] = c.person.Group
		c.expires = c.since.Add(l.TTL)
		if !now.Before(c.expires) || len(l.cache) >= l.MaxCached {
			continue
		}
		c.recheck = c.recheck || recheck
		l.cache[k] = c
	}
	return groups
}

// Directories asks each Directory in turn; the first that knows the user
// answers.
type Directories []Directory

// Person implements Directory.
func (ds Directories) Person(user string) (Person, bool) {
	for _, d := range ds {
		if d == nil {
			continue
		}
		if p, ok := d.Person(user); ok {
			return p, ok
		}
	}
	return Person{}, false
}
