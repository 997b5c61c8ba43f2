// Package signin is the sign-in page for devices without proxy settings
// (Chromebooks, pupils' own devices on the school Wi-Fi): "Sign in with
// your school account" through the school's Google Workspace or Microsoft
// Entra ID (OpenID Connect, the authorisation code flow with state, nonce
// and PKCE). A good sign-in maps the address the page saw the browser
// come from (the TCP peer, never a header) to the user in the identity
// table (identity.SourceSignin) for the TTL; sign-out removes it, and a
// second person signing in from the same address replaces the first.
// Sign-ins are kept in the database (Store) so that they survive a
// restart, and only until they end. See identity/README.md.
package signin

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/oauth2"

	"github.com/gatehouse-filter/gatehouse/identity"
	"github.com/gatehouse-filter/gatehouse/internal/oidcclaims"
	"github.com/gatehouse-filter/gatehouse/internal/peraddr"
	"github.com/gatehouse-filter/gatehouse/internal/username"
)

// ClaimGroup maps an ID token claim's value to a Gatehouse group.
type ClaimGroup struct {
	Claim, Value, Group string
}

// Options configure a Service.
type Options struct {
	Table        *identity.Table // where sign-ins go (required)
	Issuer       string          // the provider's issuer URL
	ClientID     string
	ClientSecret string
	RedirectURL  string   // this page's callback, https://HOST/callback
	Domains      []string // email domains that may sign in (lower case)
	// LocalPart makes the user name the email's part before the @
	// (otherwise the whole address), lower case.
	LocalPart bool
	Groups    []ClaimGroup
	// HostedDomain requires the ID token's "hd" claim (Google Workspace's
	// hosted domain) to be the email's domain, so that a consumer Google
	// account made with a school address is refused. serve sets it for
	// Google's issuer.
	HostedDomain bool
	// Tenant is Microsoft Entra ID's tenant ID (serve takes it from the
	// issuer): Entra ID sends no email_verified, so its accounts are
	// vouched for by the tenant instead. The ID token's tid must be the
	// tenant, it must be no guest's (an idp claim other than the tenant:
	// a B2B guest or a personal Microsoft account invited into it), and
	// xms_edov (the email's domain verified by the tenant), when sent,
	// must not be false. "" (any other provider): email_verified must be
	// true.
	Tenant string
	TTL    time.Duration // how long a sign-in names its address
	// Allowed says who may reach the page; read per request (nil: all).
	Allowed func(netip.Addr) bool
	// SchoolDevice names the school device (clients.devices) at an
	// address, "" for none; read per request (nil: none). A school device
	// is filtered as the config says: the page signs nobody in there, so
	// a pupil at a classroom computer cannot take a teacher's group with
	// the teacher's account, nor relabel the computer's events.
	SchoolDevice func(netip.Addr) string
	School       string
	Label        string         // "Sign in with LABEL"
	Location     *time.Location // for the times the page shows (nil: UTC)
	Secure       bool           // the page is served over HTTPS (cookies are Secure)
	Store        *Store         // nil: sign-ins are not kept across a restart
	// Client makes the requests to the provider (nil: http.DefaultClient,
	// with the system's roots; TLS is always verified).
	Client   *http.Client
	Log      *slog.Logger
	Now      func() time.Time
	Registry prometheus.Registerer
}

// Bounds (identity/README.md).
const (
	// MaxPending sign-ins under way at once, each for PendingLimit;
	// beyond that the oldest is dropped (its browser is asked to start
	// again).
	MaxPending   = 10000
	PendingLimit = 10 * time.Minute
	// RateLimit sign-in steps (start, callback, sign-out) per address a
	// minute; beyond that 429 until the minute ends. At most
	// MaxLimited addresses are counted at once (past that, one count is
	// forgotten for each new address).
	RateLimit  = 10
	MaxLimited = 65536
)

const cookieName = "gatehouse-signin"

// Service is the sign-in page. The zero value is not usable; call New.
type Service struct {
	o   Options
	key [32]byte // signs the sign-out forms' tokens (per process)

	mu sync.Mutex
	// storeMu orders the database's copy of the sign-ins as the table's:
	// held from the table's change to the row's (two sign-ins at one
	// address, behind NAT, were written in either order).
	storeMu  sync.Mutex
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier // the provider's, with its keys cached
	pending  map[string]pending    // by state
	order    []string              // pending's states, oldest first (some may be gone from it)
	who      map[netip.Addr]record // current sign-ins, by address
	limited  peraddr.Window        // sign-in steps per address, this minute

	results *prometheus.CounterVec
}

type pending struct {
	nonce, verifier string
	browser         [32]byte // SHA-256 of the browser's cookie
	addr            netip.Addr
	started         time.Time
}

// record is a current sign-in.
type record struct {
	User, Display, Group, Session string
	Since, Expires                time.Time
}

// New makes the service. Load the kept sign-ins with Restore before
// serving.
func New(o Options) (*Service, error) {
	if o.Table == nil || o.Issuer == "" || o.ClientID == "" || o.RedirectURL == "" || len(o.Domains) == 0 || o.TTL <= 0 {
		return nil, errors.New("signin: needs the table, an issuer, a client ID, a redirect URL, an email domain and a TTL")
	}
	if o.Label == "" {
		o.Label = "your school account"
	}
	if o.Location == nil {
		o.Location = time.UTC
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s := &Service{o: o, pending: map[string]pending{}, who: map[netip.Addr]record{},
		limited: peraddr.Window{Span: time.Minute, Max: MaxLimited, ForgetWhenFull: true}}
	if _, err := rand.Read(s.key[:]); err != nil {
		return nil, err
	}
	s.results = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_identity_signin_total",
		Help: "Sign-in page outcomes: signed-in, replaced (another person's sign-in at the address ended), renewed, signed-out, refused-domain, refused-state, refused-token, refused-device (a school device), ended-device (a sign-in ended because its address turned out to be a school device), refused-address (not allowed to reach the page), refused-provider, ratelimited, full (the identity table is full).",
	}, []string{"result"})
	if o.Registry != nil {
		o.Registry.MustRegister(s.results)
	}
	return s, nil
}

// Restore puts the sign-ins kept in the store back in the table (ended
// ones are deleted, never loaded). It returns how many. Sign-ins kept
// under other settings (provider, domains, user form, claim groups, TTL)
// are dropped instead: their group or name came from rules IT has since
// changed (a claim mapping that put pupils in a staff group, a domain no
// longer allowed), so those people sign in again.
func (s *Service) Restore(ctx context.Context) (int, error) {
	if s.o.Store == nil {
		return 0, nil
	}
	fp := s.fingerprint()
	old, err := s.o.Store.Fingerprint(ctx)
	if err != nil {
		return 0, err
	}
	if old != "" && old != fp {
		n, err := s.o.Store.Clear(ctx)
		if err != nil {
			return 0, err
		}
		if n > 0 {
			s.o.Log.Info("sign-in page: its settings changed, so the sign-ins kept from before are dropped (those people sign in again)", "dropped", n)
		}
	}
	if old != fp {
		if err := s.o.Store.SetFingerprint(ctx, fp); err != nil {
			return 0, err
		}
	}
	saved, err := s.o.Store.Load(ctx, s.o.Now())
	if err != nil {
		return 0, err
	}
	n := 0
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range saved {
		if s.o.Table.Set(v.mapping()) {
			s.who[v.Addr] = v.record
			n++
		}
	}
	return n, nil
}

// fingerprint digests the settings that decide who a sign-in names and
// for how long.
func (s *Service) fingerprint() string {
	h := sha256.New()
	fmt.Fprintf(h, "%q %q %v %v %v %d", s.o.Issuer, s.o.ClientID, s.o.Domains, s.o.LocalPart, s.o.HostedDomain, s.o.TTL)
	if s.o.Tenant != "" {
		fmt.Fprintf(h, " tenant %q", s.o.Tenant)
	}
	for _, g := range s.o.Groups {
		fmt.Fprintf(h, " %q=%q>%q", g.Claim, g.Value, g.Group)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Run drops ended sign-ins, pending sign-ins and rate counts every
// interval (the table ends the mappings by itself) until ctx ends.
func (s *Service) Run(ctx context.Context, interval time.Duration) {
	tk := time.NewTicker(interval)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		s.sweep(ctx)
	}
}

func (s *Service) sweep(ctx context.Context) {
	now := s.o.Now()
	var school []netip.Addr
	s.mu.Lock()
	for a, r := range s.who {
		if !now.Before(r.Expires) {
			delete(s.who, a)
		} else if s.o.SchoolDevice != nil {
			school = append(school, a)
		}
	}
	for k, p := range s.pending {
		if now.Sub(p.started) > PendingLimit {
			delete(s.pending, k)
		}
	}
	for len(s.order) > 0 { // what the sweep and the callbacks ended
		if _, ok := s.pending[s.order[0]]; ok {
			break
		}
		s.order = s.order[1:]
	}
	if len(s.pending) == 0 {
		s.order = nil
	}
	s.mu.Unlock()
	// A sign-in at what has since turned out to be a school device (its
	// lease was read after the sign-in, a reload listed it, a sign-in kept
	// from before a restart) ends: the device's own settings decide.
	for _, a := range school {
		if s.o.SchoolDevice(a) == "" {
			continue
		}
		if rec, ok := s.current(a, now); ok {
			s.Remove(ctx, a, rec.Session)
			s.results.WithLabelValues("ended-device").Inc()
		}
	}
	s.limited.Sweep(now)
	if s.o.Store != nil {
		if err := s.o.Store.Sweep(ctx, now); err != nil {
			s.o.Log.Warn("sign-in page: deleting ended sign-ins from the database failed", "err", err)
		}
	}
}

// Len is the number of current sign-ins.
func (s *Service) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.who)
}

// peer is the connecting address: the TCP peer, never a header.
func peer(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// step starts a sign-in step: the request's peer address and the time,
// with the step counted against the address (allow); when it is over the
// limit the request is refused (429) and ok is false.
func (s *Service) step(w http.ResponseWriter, r *http.Request) (addr netip.Addr, now time.Time, ok bool) {
	addr, now = peer(r), s.o.Now()
	if !s.allow(addr, now) {
		s.refuse(w, addr, http.StatusTooManyRequests, "ratelimited", "Too many sign-ins from this device. Please wait a minute and try again.")
		return addr, now, false
	}
	return addr, now, true
}

// allow counts a sign-in step from addr; false when the address is over
// RateLimit this minute. With MaxLimited addresses counted and none at
// the end of its minute, another address's count is forgotten (many
// addresses: IPv6 privacy addresses churned by one device can do it)
// rather than every new address refused, so the page stays open to
// everyone else.
func (s *Service) allow(addr netip.Addr, now time.Time) bool {
	return s.limited.Add(addr, now) <= RateLimit
}

func (s *Service) ctx(ctx context.Context) context.Context {
	if c := s.o.Client; c != nil {
		ctx = oidc.ClientContext(ctx, c)
		ctx = context.WithValue(ctx, oauth2.HTTPClient, c)
	}
	return ctx
}

// discover finds the provider once; a failure is retried at the next
// sign-in.
func (s *Service) discover(ctx context.Context) (*oidc.Provider, *oauth2.Config, error) {
	s.mu.Lock()
	p := s.provider
	s.mu.Unlock()
	if p == nil {
		ctx, cancel := context.WithTimeout(s.ctx(ctx), 15*time.Second)
		defer cancel()
		var err error
		if p, err = oidc.NewProvider(ctx, s.o.Issuer); err != nil {
			return nil, nil, err
		}
		// One verifier for all sign-ins: it caches the provider's keys (a
		// verifier made per sign-in fetched them every time, a request to
		// the provider for each pupil in a morning rush). Its context is
		// for those fetches, so it outlives any request.
		v := p.VerifierContext(s.ctx(context.Background()), &oidc.Config{ClientID: s.o.ClientID, Now: s.o.Now})
		s.mu.Lock()
		s.provider, s.verifier = p, v
		s.mu.Unlock()
	}
	return p, &oauth2.Config{ClientID: s.o.ClientID, ClientSecret: s.o.ClientSecret, RedirectURL: s.o.RedirectURL,
		Endpoint: p.Endpoint(), Scopes: []string{oidc.ScopeOpenID, "email", "profile"}}, nil
}

// Handler serves the page: GET / (who is signed in here, the button),
// POST /start (off to the provider), GET /callback (back from it) and
// POST /signout. Addresses outside Allowed get 403 and nothing more.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.home)
	mux.HandleFunc("POST /start", s.start)
	mux.HandleFunc("GET "+callbackPath(s.o.RedirectURL), s.callback)
	mux.HandleFunc("POST /signout", s.signout)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer") // the callback's URL holds the code
		h.Set("X-Frame-Options", "DENY")
		if s.o.Secure {
			h.Set("Strict-Transport-Security", "max-age=31536000") // the page is HTTPS from then on
		}
		a := peer(r)
		if !a.IsValid() || (s.o.Allowed != nil && !s.o.Allowed(a)) {
			s.results.WithLabelValues("refused-address").Inc()
			http.Error(w, "Forbidden", http.StatusForbidden)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func callbackPath(redirect string) string {
	if u, err := url.Parse(redirect); err == nil && u.Path != "" {
		return u.Path
	}
	return "/callback"
}

func randomToken() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic("signin: no randomness: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// current is addr's sign-in, if it has not ended.
func (s *Service) current(addr netip.Addr, now time.Time) (record, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.who[addr]
	if !ok || !now.Before(r.Expires) {
		return record{}, false
	}
	return r, true
}

// signoutToken binds a sign-out form to the address and its sign-in, so
// another site cannot sign a pupil out.
func (s *Service) signoutToken(addr netip.Addr, session string) string {
	m := hmac.New(sha256.New, s.key[:])
	m.Write([]byte(addr.String() + "\x00" + session))
	return hex.EncodeToString(m.Sum(nil))
}

func (s *Service) home(w http.ResponseWriter, r *http.Request) {
	addr := peer(r)
	now := s.o.Now()
	d := s.pageData(addr)
	if rec, ok := s.current(addr, now); ok {
		d.Signed = s.describe(addr, rec)
		d.Until = rec.Expires.In(s.o.Location).Format(timeLayout)
		d.Token = s.signoutToken(addr, rec.Session)
	}
	s.render(w, http.StatusOK, d)
}

// describe names a sign-in as the page shows it: the directory's display
// name where the table has it, else the token's, and the user name.
func (s *Service) describe(addr netip.Addr, rec record) string {
	display := rec.Display
	if e := s.o.Table.Lookup(addr, s.o.Now().UnixNano()); e != nil && e.User == rec.User && e.Display != "" {
		display = e.Display
	}
	if display == "" {
		return rec.User
	}
	return display + " (" + rec.User + ")"
}

const timeLayout = "15:04 on Monday 2 January"

func (s *Service) start(w http.ResponseWriter, r *http.Request) {
	addr, now, ok := s.step(w, r)
	if !ok || s.schoolDevice(w, addr) {
		return
	}
	_, conf, err := s.discover(r.Context())
	if err != nil {
		s.o.Log.Error("sign-in page: the provider could not be discovered", "issuer", s.o.Issuer, "err", err)
		s.refuse(w, addr, http.StatusBadGateway, "refused-provider", "Signing in is not available at the moment (the school's sign-in service did not answer). Please try again later.")
		return
	}
	state, nonce, verifier, browser := randomToken(), randomToken(), oauth2.GenerateVerifier(), randomToken()
	s.mu.Lock()
	// Oldest first: drop those used already, ended, or (when full) the
	// oldest, without looking at the others (a full scan per start was
	// 10,000 entries under the lock in a flood).
	for len(s.order) > 0 {
		k := s.order[0]
		p, ok := s.pending[k]
		if ok && now.Sub(p.started) <= PendingLimit && len(s.pending) < MaxPending {
			break
		}
		delete(s.pending, k)
		s.order = s.order[1:]
	}
	if len(s.order) > 2*MaxPending { // mostly used ones behind a live oldest: rebuild
		live := s.order[:0:0]
		for _, k := range s.order {
			if _, ok := s.pending[k]; ok {
				live = append(live, k)
			}
		}
		s.order = live
	}
	s.pending[state] = pending{nonce: nonce, verifier: verifier, browser: sha256.Sum256([]byte(browser)), addr: addr, started: now}
	s.order = append(s.order, state)
	s.mu.Unlock()
	// The state is bound to this browser by a cookie, so a sign-in
	// started elsewhere cannot be finished here. Lax: the provider's
	// redirect back is a top-level GET from another site.
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: browser, Path: "/", MaxAge: int(PendingLimit.Seconds()),
		Secure: s.o.Secure, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, conf.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), http.StatusSeeOther)
}

// schoolDevice refuses a sign-in at a school device (Options.SchoolDevice)
// and reports whether it did.
func (s *Service) schoolDevice(w http.ResponseWriter, addr netip.Addr) bool {
	d := s.pageData(addr)
	if d.Device == "" {
		return false
	}
	s.refuse(w, addr, http.StatusForbidden, "refused-device", "This is a school computer ("+d.Device+"): the school's web filter applies its own settings to it, so nobody signs in here. The sign-in page is for your own phone or laptop.")
	return true
}

// refuse answers a step that did not work, counted by reason.
func (s *Service) refuse(w http.ResponseWriter, addr netip.Addr, status int, result, text string) {
	s.results.WithLabelValues(result).Inc()
	if status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "60")
	}
	d := s.pageData(addr)
	d.Error = text
	s.render(w, status, d)
}

// claims are the ID token's claims the page reads.
type claims = oidcclaims.Claims

func (s *Service) callback(w http.ResponseWriter, r *http.Request) {
	addr, now, ok := s.step(w, r)
	if !ok {
		return
	}
	again := "Signing in did not finish. Please start again."
	q := r.URL.Query()
	state := q.Get("state")
	s.mu.Lock()
	p, ok := s.pending[state]
	delete(s.pending, state) // one use
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, Secure: s.o.Secure, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	c, cerr := r.Cookie(cookieName)
	switch {
	case state == "" || !ok || now.Sub(p.started) > PendingLimit:
		s.refuse(w, addr, http.StatusBadRequest, "refused-state", again)
		return
	case cerr != nil || sha256.Sum256([]byte(c.Value)) != p.browser:
		s.refuse(w, addr, http.StatusBadRequest, "refused-state", again)
		return
	case addr != p.addr:
		// The address is what the sign-in names: it must be the one
		// that started it.
		s.refuse(w, addr, http.StatusBadRequest, "refused-state", "This device's network address changed while you were signing in. Please start again.")
		return
	case q.Get("error") != "":
		s.refuse(w, addr, http.StatusUnauthorized, "refused-provider", "The school's sign-in service did not sign you in. Please try again.")
		return
	}
	_, conf, err := s.discover(r.Context())
	if err != nil {
		s.o.Log.Error("sign-in page: the provider could not be discovered", "issuer", s.o.Issuer, "err", err)
		s.refuse(w, addr, http.StatusBadGateway, "refused-provider", again)
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx(r.Context()), 15*time.Second)
	defer cancel()
	tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(p.verifier))
	if err != nil {
		s.o.Log.Warn("sign-in page: the code exchange failed", "err", err)
		s.refuse(w, addr, http.StatusUnauthorized, "refused-provider", again)
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		s.refuse(w, addr, http.StatusUnauthorized, "refused-token", again)
		return
	}
	// go-oidc checks the signature against the provider's keys, the
	// issuer, the audience (our client ID) and the expiry.
	s.mu.Lock()
	verifier := s.verifier
	s.mu.Unlock()
	idt, err := verifier.Verify(ctx, raw)
	if err != nil {
		s.o.Log.Warn("sign-in page: ID token refused", "err", err)
		s.refuse(w, addr, http.StatusUnauthorized, "refused-token", again)
		return
	}
	if subtle(idt.Nonce, p.nonce) {
		s.refuse(w, addr, http.StatusUnauthorized, "refused-token", again)
		return
	}
	var cl claims
	var all map[string]any
	if err := idt.Claims(&cl); err != nil {
		s.refuse(w, addr, http.StatusUnauthorized, "refused-token", again)
		return
	}
	if err := idt.Claims(&all); err != nil {
		s.refuse(w, addr, http.StatusUnauthorized, "refused-token", again)
		return
	}
	email := strings.ToLower(strings.TrimSpace(cl.Email))
	if email == "" && strings.Contains(cl.PreferredUsername, "@") {
		email = strings.ToLower(strings.TrimSpace(cl.PreferredUsername)) // Entra ID without the email claim: the UPN
	}
	local, domain, _ := strings.Cut(email, "@")
	switch {
	case local == "" || domain == "" || len(email) > 254 || strings.ContainsFunc(email, badEmailRune):
		s.refuse(w, addr, http.StatusForbidden, "refused-token", "Your account did not give an email address, so the school cannot tell who you are. Ask IT.")
		return
	case !cl.Vouched(idt.Issuer, s.o.Tenant):
		s.refuse(w, addr, http.StatusForbidden, "refused-token", "Your school's sign-in service did not confirm that this is a school account, so it cannot be used to sign in here.")
		return
	case !slices.Contains(s.o.Domains, domain), s.o.HostedDomain && !strings.EqualFold(cl.HD, domain):
		s.refuse(w, addr, http.StatusForbidden, "refused-domain", email+" is not a school account. Please sign in with your school account.")
		return
	}
	if s.schoolDevice(w, addr) { // the lease naming it came while the pupil was at the provider
		return
	}
	user := email
	if s.o.LocalPart {
		user = local
	}
	user = username.Canon(user) // the one form names are recorded in: "Straße@" is the directory's "strasse@"
	rec := record{User: user, Display: cleanText(cl.Name, 100), Group: s.groupFor(all), Session: randomToken(), Since: now, Expires: now.Add(s.o.TTL)}
	if !s.set(r.Context(), addr, rec) {
		s.refuse(w, addr, http.StatusServiceUnavailable, "full", "The web filter cannot take more sign-ins at the moment. Please try again in a few minutes, or tell IT.")
		return
	}
	d := s.pageData(addr)
	d.Signed = s.describe(addr, rec)
	d.Until = rec.Expires.In(s.o.Location).Format(timeLayout)
	d.Token = s.signoutToken(addr, rec.Session)
	d.Done = true
	s.render(w, http.StatusOK, d)
}

// badEmailRune: what no school account's address holds (spaces, control
// characters, quotes, brackets, wildcards).
func badEmailRune(r rune) bool {
	return r <= ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) || strings.ContainsRune("<>\",;()\\*", r)
}

// subtle reports whether the nonces differ.
func subtle(a, b string) bool {
	return a == "" || !hmac.Equal([]byte(a), []byte(b))
}

// groupFor is the group the first matching Groups entry gives ("" when
// none: identity.groups and the directory decide).
func (s *Service) groupFor(all map[string]any) string {
	for _, g := range s.o.Groups {
		switch v := all[g.Claim].(type) {
		case string:
			if strings.EqualFold(v, g.Value) {
				return g.Group
			}
		case []any:
			for _, x := range v {
				if xs, ok := x.(string); ok && strings.EqualFold(xs, g.Value) {
					return g.Group
				}
			}
		}
	}
	return ""
}

// cleanText keeps a claim printable, on one line and at most n bytes.
func cleanText(v string, n int) string {
	v = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return -1
		}
		return r
	}, strings.TrimSpace(v))
	for len(v) > n {
		_, size := lastRune(v)
		v = v[:len(v)-size]
	}
	return v
}

func lastRune(s string) (rune, int) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] < 0x80 || s[i] >= 0xc0 {
			return rune(s[i]), len(s) - i
		}
	}
	return 0, len(s)
}

// set records a sign-in for addr: in the table, the page's own list and
// the store. A sign-in by another person at the address replaces theirs.
// false: the table is full.
func (s *Service) set(ctx context.Context, addr netip.Addr, rec record) bool {
	m := saved{Addr: addr, record: rec}.mapping()
	s.storeMu.Lock()
	defer s.storeMu.Unlock()
	s.mu.Lock()
	old, had := s.who[addr]
	if !s.o.Table.Set(m) {
		s.mu.Unlock()
		return false
	}
	s.who[addr] = rec
	s.mu.Unlock()
	switch {
	case had && s.o.Now().Before(old.Expires) && old.User != rec.User:
		s.results.WithLabelValues("replaced").Inc()
		// Names and addresses are not logged (identity/README.md, Privacy):
		// the events from the address name who was signed in when.
		s.o.Log.Info("sign-in page: a sign-in replaced another person's at the same address")
	case had && s.o.Now().Before(old.Expires):
		s.results.WithLabelValues("renewed").Inc()
	default:
		s.results.WithLabelValues("signed-in").Inc()
	}
	if s.o.Store != nil {
		// Not the request's context: a browser that goes away must not
		// leave the database behind the table.
		if err := s.o.Store.Save(context.WithoutCancel(ctx), saved{Addr: addr, record: rec}); err != nil {
			s.o.Log.Warn("sign-in page: the sign-in could not be kept in the database (it holds until a restart)", "err", err)
		}
	}
	return true
}

// maxSignoutForm bounds the sign-out form's body (a token of 64 hex
// digits): a longer one is refused as out of date.
const maxSignoutForm = 4 << 10

func (s *Service) signout(w http.ResponseWriter, r *http.Request) {
	addr, now, ok := s.step(w, r)
	if !ok {
		return
	}
	rec, ok := s.current(addr, now)
	if !ok {
		d := s.pageData(addr)
		d.Out = true
		s.render(w, http.StatusOK, d)
		return
	}
	// The form is one token: net/http would read up to 10 MB of it.
	r.Body = http.MaxBytesReader(w, r.Body, maxSignoutForm)
	if !hmac.Equal([]byte(r.PostFormValue("token")), []byte(s.signoutToken(addr, rec.Session))) {
		s.refuse(w, addr, http.StatusBadRequest, "refused-state", "That sign-out form is out of date. Please use the button on this page.")
		return
	}
	s.Remove(r.Context(), addr, rec.Session)
	s.results.WithLabelValues("signed-out").Inc()
	d := s.pageData(addr)
	d.Out = true
	s.render(w, http.StatusOK, d)
}

// Remove ends addr's sign-in if it is still session's.
func (s *Service) Remove(ctx context.Context, addr netip.Addr, session string) {
	s.storeMu.Lock()
	defer s.storeMu.Unlock()
	s.mu.Lock()
	if r, ok := s.who[addr]; ok && r.Session == session {
		delete(s.who, addr)
	}
	s.o.Table.Remove(addr, identity.SourceSignin, session)
	s.mu.Unlock()
	if s.o.Store != nil {
		if err := s.o.Store.Delete(context.WithoutCancel(ctx), addr, session); err != nil {
			s.o.Log.Warn("sign-in page: a sign-out could not be written to the database", "err", err)
		}
	}
}
