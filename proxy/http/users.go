package httpproxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/gatehouse-filter/gatehouse/identity"
	"github.com/gatehouse-filter/gatehouse/internal/maproom"
	"github.com/gatehouse-filter/gatehouse/internal/peraddr"
	"github.com/gatehouse-filter/gatehouse/internal/username"
)

// Users is the proxy's users file: "name:bcrypt-hash" lines, as
// `htpasswd -B` writes them; blank lines and lines starting with # are
// skipped. The file is re-read when it changes (checked at most every few
// seconds). A password that passed bcrypt once is remembered as a SHA-256
// digest, so a browser sending its login with every request costs one
// hash, not one bcrypt.
//
// bcrypt is slow on purpose, so a flood of logins (or guesses) is CPU:
// at most bcryptWorkers checks run at once and at most bcryptQueue more
// wait for one; past that Verify answers ErrBusy at once (the proxy sends
// 503 with Retry-After) instead of parking more goroutines.
type Users struct {
	path string

	mu      sync.RWMutex
	hashes  map[string][]byte
	ok      map[string][32]byte // verified password digests
	mtime   time.Time
	checked time.Time

	limit   *checkLimit // bounds concurrent bcrypt work (a login flood is CPU)
	compare func(hash, password []byte) error
}

// checkLimit bounds slow login checks (bcrypt, directory binds): at most
// cap(sem) run at once and at most queue more wait; past that do answers
// ErrBusy at once instead of parking more goroutines.
type checkLimit struct {
	sem     chan struct{}
	queue   int32
	waiting atomic.Int32 // checks running or waiting for sem
}

func newCheckLimit(workers, queue int) *checkLimit {
	return &checkLimit{sem: make(chan struct{}, workers), queue: int32(queue)}
}

// do runs f within the bound, or returns ErrBusy without running it.
func (l *checkLimit) do(f func()) error {
	if l.waiting.Add(1) > int32(cap(l.sem))+l.queue {
		l.waiting.Add(-1)
		return ErrBusy
	}
	l.sem <- struct{}{}
	defer func() {
		<-l.sem
		l.waiting.Add(-1)
	}()
	f()
	return nil
}

// Bounds on bcrypt work (see Users).
const (
	bcryptWorkers = 2
	bcryptQueue   = 64
	// Directory binds wait on the network, not the CPU: a few more run
	// at once (the cache answers most logins without one).
	dirWorkers = 4
	dirQueue   = 64
)

// ErrBusy is Verify's answer when too many logins are being checked.
var ErrBusy = errors.New("too many logins are being checked")

// LoadUsers reads a users file.
func LoadUsers(path string) (*Users, error) {
	u := &Users{path: path, limit: newCheckLimit(bcryptWorkers, bcryptQueue), compare: bcrypt.CompareHashAndPassword}
	if err := u.reload(); err != nil {
		return nil, err
	}
	return u, nil
}

func (u *Users) reload() error {
	fi, err := os.Stat(u.path)
	if err != nil {
		return fmt.Errorf("proxy users file: %w", err)
	}
	data, err := os.ReadFile(u.path)
	if err != nil {
		return fmt.Errorf("proxy users file: %w", err)
	}
	hashes, err := parseUsers(data)
	if err != nil {
		return fmt.Errorf("proxy users file %s: %w", u.path, err)
	}
	u.mu.Lock()
	u.hashes, u.ok, u.mtime, u.checked = hashes, map[string][32]byte{}, fi.ModTime(), time.Now()
	u.mu.Unlock()
	return nil
}

func parseUsers(data []byte) (map[string][]byte, error) {
	out := map[string][]byte{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' {
			continue
		}
		name, hash, ok := strings.Cut(s, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return nil, fmt.Errorf("line %d: want name:bcrypt-hash", line)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("line %d: user %q: not a bcrypt hash (make one with htpasswd -B)", line, name)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("line %d: user %q is listed twice", line, name)
		}
		out[name] = []byte(hash)
	}
	return out, sc.Err()
}

// maybeReload re-reads the file if it changed (checked at most every 5s).
func (u *Users) maybeReload() {
	u.mu.RLock()
	due := time.Since(u.checked) > 5*time.Second
	u.mu.RUnlock()
	if !due {
		return
	}
	u.mu.Lock()
	u.checked = time.Now()
	mtime := u.mtime
	u.mu.Unlock()
	if fi, err := os.Stat(u.path); err == nil && !fi.ModTime().Equal(mtime) {
		_ = u.reload() // a broken edit keeps the users already loaded
	}
}

// Verify checks a name and password. It returns ErrBusy, without checking,
// when bcryptWorkers checks are running and bcryptQueue more are waiting.
func (u *Users) Verify(name, password string) (bool, error) {
	u.maybeReload()
	digest := sha256.Sum256([]byte(password))
	u.mu.RLock()
	hash, known := u.hashes[name]
	good, cached := u.ok[name]
	u.mu.RUnlock()
	if !known {
		return false, nil
	}
	if cached {
		return subtle.ConstantTimeCompare(good[:], digest[:]) == 1, nil
	}
	var err error
	if lerr := u.limit.do(func() { err = u.compare(hash, []byte(password)) }); lerr != nil {
		return false, lerr
	}
	if err != nil {
		return false, nil
	}
	u.mu.Lock()
	if u.ok != nil {
		u.ok[name] = digest
	}
	u.mu.Unlock()
	return true, nil
}

// remembered reports whether password is the one that passed bcrypt
// for name last (Verify answers it without bcrypt).
func (u *Users) remembered(name, password string) bool {
	u.maybeReload()
	digest := sha256.Sum256([]byte(password))
	u.mu.RLock()
	good, cached := u.ok[name]
	u.mu.RUnlock()
	return cached && subtle.ConstantTimeCompare(good[:], digest[:]) == 1
}

// Knows reports whether the file lists name (its password is checked
// there, never against the directory).
func (u *Users) Knows(name string) bool {
	u.maybeReload()
	u.mu.RLock()
	defer u.mu.RUnlock()
	_, ok := u.hashes[name]
	return ok
}

// Failed logins per client address and per user name (loginFailures).
const (
	maxLoginFailures   = 10          // wrong logins from one address within failWindow
	maxAccountFailures = 20          // wrong logins for one user name within failWindow, from any addresses
	failWindow         = time.Minute //
	maxFailAddrs       = 4096        // addresses counted at once
	maxFailAccounts    = 4096        // user names counted at once
)

// loginFailures counts wrong logins per client address: after
// maxLoginFailures within failWindow of the first, the address's logins
// are refused unchecked until the window ends (a pupil guessing a
// teacher's password gets 10 tries a minute, and never locks the
// teacher's directory account for them). At most maxFailAddrs addresses
// are counted; with that many failing at once, ended windows are swept
// and a new address is not counted until there is room.
//
// Wrong logins are counted per user name too (its username.Canon form,
// kept as a digest so a long name costs no memory): after
// maxAccountFailures within failWindow, from whatever addresses (a
// pupil's devices, a classroom's computers, an IPv6 device's privacy
// addresses, each with its own 10), the name's logins are refused
// unchecked until the window ends, except from an address the user is
// logged in at (the teacher's own computer, whose browser's login is
// checked again when the directory's cache_ttl ends) and for a password
// the users file passed before (authenticate checks no such one). At
// most maxFailAccounts names are counted, as addresses are
// (TestProxyLoginGuessesPerAccountLimited).
//
// A check under way counts against both budgets (begin, done): else a
// guesser sending his tries at once, on as many connections, would have
// every one checked before the first wrong one was counted
// (TestProxyLoginGuessesAtOnceLimited).
type loginFailures struct {
	w    peraddr.Window
	acct peraddr.Keyed[[32]byte]

	mu          sync.Mutex
	pending     map[netip.Addr]int // checks under way (at most one per request in authenticate)
	pendingAcct map[[32]byte]int
}

func newLoginFailures() *loginFailures {
	return &loginFailures{
		w:       peraddr.Window{Span: failWindow, Max: maxFailAddrs},
		acct:    peraddr.Keyed[[32]byte]{Span: failWindow, Max: maxFailAccounts},
		pending: map[netip.Addr]int{}, pendingAcct: map[[32]byte]int{},
	}
}

func (f *loginFailures) blocked(ip netip.Addr, now time.Time) bool {
	return f.w.Count(ip.Unmap(), now) >= maxLoginFailures
}

func (f *loginFailures) add(ip netip.Addr, now time.Time) { f.w.Add(ip.Unmap(), now) }

// accountKey is the key a user name's wrong logins are counted under.
func accountKey(name string) [32]byte { return sha256.Sum256([]byte(username.Canon(name))) }

// Answers of begin for a login refused unchecked.
var (
	errTooManyWrong   = errors.New("too many wrong logins from this address")
	errAccountLimited = errors.New("too many wrong logins for this user name")
)

// begin reserves a check of a login for name from ip: errTooManyWrong
// when the address has had maxLoginFailures wrong logins in its window,
// errAccountLimited when the name has had maxAccountFailures (with
// limitAccount; without, the user is logged in at ip), ErrBusy when those and
// the checks under way make the bound (each could be wrong); else it
// returns done, to be called once the check is over.
func (f *loginFailures) begin(ip netip.Addr, name string, limitAccount bool, now time.Time) (done func(wrong bool), err error) {
	ip = ip.Unmap()
	key := accountKey(name)
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.w.Count(ip, now)
	switch {
	case n >= maxLoginFailures:
		return nil, errTooManyWrong
	case n+f.pending[ip] >= maxLoginFailures:
		return nil, ErrBusy
	}
	if limitAccount {
		switch a := f.acct.Count(key, now); {
		case a >= maxAccountFailures:
			return nil, errAccountLimited
		case a+f.pendingAcct[key] >= maxAccountFailures:
			return nil, ErrBusy
		}
		f.pendingAcct[key]++
	}
	f.pending[ip]++
	return func(wrong bool) { f.done(ip, key, limitAccount, wrong, now) }, nil
}

// done ends a check begin reserved, counting it if the login was wrong.
func (f *loginFailures) done(ip netip.Addr, key [32]byte, account, wrong bool, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if wrong {
		f.w.Add(ip, now)
		f.acct.Add(key, now)
	}
	if f.pending[ip]--; f.pending[ip] <= 0 {
		delete(f.pending, ip)
	}
	if account {
		if f.pendingAcct[key]--; f.pendingAcct[key] <= 0 {
			delete(f.pendingAcct, key)
		}
	}
}

// parseBasic reads a "Basic base64(name:password)" credential.
func parseBasic(h string) (name, password string, ok bool) {
	const prefix = "basic "
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(h[len(prefix):]))
	if err != nil {
		return "", "", false
	}
	name, password, ok = strings.Cut(string(raw), ":")
	return name, password, ok && name != ""
}

// Logins remembers which user last logged in from each client address, for
// a fixed time. The DNS resolver asks UserFor so that its events from that
// address carry the user's name. At most max addresses are remembered
// (loginAddrsMax).
type Logins struct {
	ttl time.Duration
	now func() time.Time
	mu  sync.RWMutex
	m   map[netip.Addr]login
	n   int // sets since the last sweep
	max int
	any atomic.Bool // a login was ever recorded: until then UserFor takes no lock
	// table, when set, is the identity table logins are recorded in too: a
	// login it no longer holds (the address went to another device) is
	// not answered here either, and a repeat of it is recorded again.
	table *identity.Table
}

type login struct {
	user    string
	expires int64 // unix nanos
}

// NewLogins makes an empty map whose entries last ttl.
func NewLogins(ttl time.Duration, now func() time.Time) *Logins {
	if now == nil {
		now = time.Now
	}
	return &Logins{ttl: ttl, now: now, m: map[netip.Addr]login{}, max: loginAddrsMax}
}

// loginAddrsMax bounds the addresses Logins remembers (about 100 bytes
// each: about 6 MiB), as identity.max_addresses does the table's: one
// person's credentials sent from ever new source addresses (an IPv6
// device's can be any in its /64) must not grow it without limit within
// login_ttl. Expired logins are swept every 1,024 logins recorded; at the
// bound one address is forgotten at random: its browser's next request
// (each carries the login) records it again.
const loginAddrsMax = 1 << 16

// UserFor returns the user logged in from ip, or "" if none (or expired).
func (l *Logins) UserFor(ip netip.Addr) string {
	if l == nil || !l.any.Load() {
		return ""
	}
	ip = ip.Unmap()
	l.mu.RLock()
	e, ok := l.m[ip]
	l.mu.RUnlock()
	if now := l.now().UnixNano(); !ok || now >= e.expires || !l.held(ip, e.user, now) {
		return ""
	}
	return e.user
}

// held reports whether the identity table (if any) still names ip as user.
func (l *Logins) held(ip netip.Addr, user string, now int64) bool {
	if l.table == nil {
		return true
	}
	w := l.table.Lookup(ip, now)
	return w != nil && w.User == user
}

// Set records a login by user from ip. It reports whether it recorded it
// (a repeat within a minute of the last is not).
func (l *Logins) Set(ip netip.Addr, user string) bool {
	ip = ip.Unmap()
	now := l.now().UnixNano()
	exp := now + int64(l.ttl)
	l.mu.RLock()
	e, ok := l.m[ip]
	l.mu.RUnlock()
	// Refresh at most once a minute per address: a browser logs in with
	// every request.
	if ok && e.user == user && e.expires-exp > -int64(time.Minute) && l.held(ip, user, now) {
		return false
	}
	l.mu.Lock()
	if l.n++; l.n > 1024 {
		l.n = 0
		for k, v := range l.m {
			if v.expires <= now {
				delete(l.m, k)
			}
		}
	}
	if _, ok := l.m[ip]; !ok {
		maproom.Make(l.m, l.max)
	}
	l.m[ip] = login{user: user, expires: exp}
	l.any.Store(true)
	l.mu.Unlock()
	return true
}
