package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/gatehouse-filter/gatehouse/internal/oidcclaims"
)

// Sign-in with the school's identity provider (Microsoft Entra ID, Google
// Workspace or any OpenID Connect provider), by the authorisation code
// flow with PKCE (S256), state and nonce. The ID token's email must be in
// an allowed domain and belong to an existing, enabled account: there is
// no automatic account creation. The second factor (TOTP) is still asked
// for unless TrustIdPMFA says the provider enforces MFA itself.

// OIDC configures sign-in with an OpenID provider.
type OIDC struct {
	Issuer       string   // the provider's issuer URL (discovery at Issuer/.well-known/openid-configuration)
	ClientID     string   // the console's client ID at the provider
	ClientSecret string   // its secret
	RedirectURL  string   // this console's callback, https://HOST/signin/oidc/callback
	Domains      []string // email domains that may sign in this way (lower case)
	TrustIdPMFA  bool     // the provider enforces MFA: no TOTP code after it
	Label        string   // the button's text, e.g. "Microsoft"
	// HostedDomain requires the ID token's "hd" claim (Google Workspace's
	// hosted domain) to be the email's domain: a consumer Google account
	// made with a school address (verified once by a code sent to that
	// mailbox, kept after the person left) has the address but no hd.
	// serve sets it for Google's issuer, as the sign-in page does.
	HostedDomain bool
	// Tenant is Microsoft Entra ID's tenant ID (serve takes it from the
	// issuer; "" for other providers). Entra ID sends no email_verified,
	// so its tokens' email is vouched for by the tenant instead
	// (oidcclaims.Claims.Vouched); any other provider must say
	// email_verified true.
	Tenant string
	// Client makes the console's requests to the provider (nil:
	// http.DefaultClient, with the system's trusted roots).
	Client *http.Client
}

// Pending sign-ins are kept in memory: at most maxPendingOIDC at once,
// each for oidcPendingLimit; beyond that the oldest is dropped (its
// browser gets "start again").
const (
	maxPendingOIDC   = 1000
	oidcPendingLimit = 10 * time.Minute
	oidcCookie       = "gatehouse-oidc"
)

// oidcState holds the provider (discovered on first use) and the
// sign-ins under way.
type oidcState struct {
	mu       sync.Mutex
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier  // the provider's, with its keys cached
	pending  map[string]oidcPending // by state
}

type oidcPending struct {
	nonce, verifier string
	browser         string // hash of the browser's oidc cookie
	started         time.Time
}

// oidcRoutes adds the provider sign-in when it is configured.
func (s *Server) oidcRoutes(mux *http.ServeMux) error {
	o := s.o.OIDC
	if o == nil {
		return nil
	}
	if o.Issuer == "" || o.ClientID == "" || o.RedirectURL == "" || len(o.Domains) == 0 {
		return errors.New("console: OIDC needs an issuer, a client ID, a redirect URL and at least one email domain")
	}
	if o.Label == "" {
		o.Label = "your school account"
	}
	s.oidc = &oidcState{pending: map[string]oidcPending{}}
	mux.HandleFunc("POST /signin/oidc", s.oidcStart)
	mux.HandleFunc("GET /signin/oidc/callback", s.oidcCallback)
	return nil
}

func (s *Server) oidcCtx(ctx context.Context) context.Context {
	if c := s.o.OIDC.Client; c != nil {
		ctx = oidc.ClientContext(ctx, c)
		ctx = context.WithValue(ctx, oauth2.HTTPClient, c)
	}
	return ctx
}

// oidcProvider discovers the provider once; a failure is retried at the
// next sign-in.
func (s *Server) oidcProvider(ctx context.Context) (*oidc.Provider, *oauth2.Config, error) {
	s.oidc.mu.Lock()
	p := s.oidc.provider
	s.oidc.mu.Unlock()
	if p == nil {
		ctx, cancel := context.WithTimeout(s.oidcCtx(ctx), 15*time.Second)
		defer cancel()
		var err error
		if p, err = oidc.NewProvider(ctx, s.o.OIDC.Issuer); err != nil {
			return nil, nil, err
		}
		// One verifier for all sign-ins, caching the provider's keys; its
		// context is for those fetches, so it outlives any request.
		v := p.VerifierContext(s.oidcCtx(context.Background()), &oidc.Config{ClientID: s.o.OIDC.ClientID, Now: s.o.Now})
		s.oidc.mu.Lock()
		s.oidc.provider, s.oidc.verifier = p, v
		s.oidc.mu.Unlock()
	}
	o := s.o.OIDC
	return p, &oauth2.Config{ClientID: o.ClientID, ClientSecret: o.ClientSecret, RedirectURL: o.RedirectURL,
		Endpoint: p.Endpoint(), Scopes: []string{oidc.ScopeOpenID, "email", "profile"}}, nil
}

// oidcStart sends the browser to the provider. It is a POST (the sign-in
// page's button), so another site cannot start a sign-in.
func (s *Server) oidcStart(w http.ResponseWriter, r *http.Request) {
	_, conf, err := s.oidcProvider(r.Context())
	if err != nil {
		s.o.Log.Error("console: OIDC discovery failed", "issuer", s.o.OIDC.Issuer, "err", err)
		s.render(w, http.StatusBadGateway, "signin", map[string]any{"OIDC": s.o.OIDC.Label,
			"Error": "Sign-in with " + s.o.OIDC.Label + " is not available now (the provider did not answer). Use your password, or try again later."})
		return
	}
	state, nonce, verifier, browser := randomToken(), randomToken(), oauth2.GenerateVerifier(), randomToken()
	now := s.o.Now()
	s.oidc.mu.Lock()
	for k, p := range s.oidc.pending {
		if now.Sub(p.started) > oidcPendingLimit {
			delete(s.oidc.pending, k)
		}
	}
	for len(s.oidc.pending) >= maxPendingOIDC {
		oldest, at := "", now
		for k, p := range s.oidc.pending {
			if !p.started.After(at) {
				oldest, at = k, p.started
			}
		}
		delete(s.oidc.pending, oldest)
	}
	s.oidc.pending[state] = oidcPending{nonce: nonce, verifier: verifier, browser: hashToken(browser), started: now}
	s.oidc.mu.Unlock()
	// The state is bound to this browser by a cookie, so a sign-in
	// started elsewhere cannot be finished here (login CSRF). Lax: the
	// provider's redirect back is a top-level GET from another site.
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: browser, Path: "/signin/oidc", MaxAge: int(oidcPendingLimit.Seconds()),
		Secure: s.o.TLS, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, conf.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), http.StatusSeeOther)
}

// oidcRefuse answers a sign-in that did not work, audited.
func (s *Server) oidcRefuse(w http.ResponseWriter, r *http.Request, status int, email, reason, text string) {
	if email == "" {
		email = "(unknown)"
	}
	if err := s.o.Store.Audit(Entry{Time: s.o.Now(), Actor: email, Addr: clientAddr(r).String(), Action: "signin.fail", Target: email, Detail: "oidc: " + reason}); err != nil {
		s.fail(w, err)
		return
	}
	s.render(w, status, "signin", map[string]any{"OIDC": s.o.OIDC.Label, "Error": text})
}

func (s *Server) oidcCallback(w http.ResponseWriter, r *http.Request) {
	now := s.o.Now()
	addr := clientAddr(r)
	q := r.URL.Query()
	state := q.Get("state")
	s.oidc.mu.Lock()
	p, ok := s.oidc.pending[state]
	delete(s.oidc.pending, state) // one use
	s.oidc.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: "", Path: "/signin/oidc", MaxAge: -1, Secure: s.o.TLS, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	c, err := r.Cookie(oidcCookie)
	again := "Sign-in with " + s.o.OIDC.Label + " did not finish. Please start again."
	switch {
	case !ok || state == "" || now.Sub(p.started) > oidcPendingLimit:
		s.oidcRefuse(w, r, http.StatusBadRequest, "", "unknown or expired state", again)
		return
	case err != nil || hashToken(c.Value) != p.browser:
		s.oidcRefuse(w, r, http.StatusBadRequest, "", "state from another browser", again)
		return
	case q.Get("error") != "":
		s.oidcRefuse(w, r, http.StatusUnauthorized, "", "provider said "+oneLine(q.Get("error")), "The provider did not sign you in ("+oneLine(q.Get("error"))+"). Please try again.")
		return
	}
	_, conf, err := s.oidcProvider(r.Context())
	if err != nil {
		s.fail(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(s.oidcCtx(r.Context()), 15*time.Second)
	defer cancel()
	tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(p.verifier))
	if err != nil {
		s.o.Log.Warn("console: OIDC code exchange failed", "err", err)
		s.oidcRefuse(w, r, http.StatusUnauthorized, "", "code exchange failed", again)
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		s.oidcRefuse(w, r, http.StatusUnauthorized, "", "no ID token", again)
		return
	}
	s.oidc.mu.Lock()
	verifier := s.oidc.verifier
	s.oidc.mu.Unlock()
	idt, err := verifier.Verify(ctx, raw)
	if err != nil {
		s.o.Log.Warn("console: OIDC ID token refused", "err", err)
		s.oidcRefuse(w, r, http.StatusUnauthorized, "", "ID token refused", again)
		return
	}
	if idt.Nonce != p.nonce {
		s.oidcRefuse(w, r, http.StatusUnauthorized, "", "nonce mismatch", again)
		return
	}
	var claims oidcclaims.Claims
	if err := idt.Claims(&claims); err != nil || claims.Email == "" {
		s.oidcRefuse(w, r, http.StatusForbidden, "", "no email in the ID token",
			"Your "+s.o.OIDC.Label+" account did not give an email address, so it cannot be matched to a console account. Ask IT.")
		return
	}
	email := NormalEmail(claims.Email)
	_, domain, _ := strings.Cut(email, "@")
	switch {
	case !claims.Vouched(idt.Issuer, s.o.OIDC.Tenant):
		// Google says email_verified; Entra ID never does, and vouches by
		// the tenant instead; a provider that says neither has not
		// verified the address it puts in the token.
		s.oidcRefuse(w, r, http.StatusForbidden, email, "email not verified by the provider", "Your email address is not verified with "+s.o.OIDC.Label+", so it cannot be used to sign in here.")
		return
	case !slices.Contains(s.o.OIDC.Domains, domain):
		s.oidcRefuse(w, r, http.StatusForbidden, email, "domain not allowed",
			fmt.Sprintf("%s is not in a domain allowed to sign in here. Use your school account.", email))
		return
	case s.o.OIDC.HostedDomain && !strings.EqualFold(claims.HD, domain):
		s.oidcRefuse(w, r, http.StatusForbidden, email, fmt.Sprintf("hd %q is not the email's domain (not the school's Workspace account)", oneLine(claims.HD)),
			"That is not your school's "+s.o.OIDC.Label+" account (it may be a personal account using your school address). Sign in with the school account.")
		return
	}
	if s.locked(w, email, addr, now) {
		return
	}
	a, err := s.o.Store.Account(email)
	switch {
	case errors.Is(err, ErrNoAccount):
		s.oidcRefuse(w, r, http.StatusForbidden, email, "no such account",
			fmt.Sprintf("%s has no console account. Accounts are made by IT (gatehouse accounts add); signing in with %s does not create one.", email, s.o.OIDC.Label))
		return
	case err != nil:
		s.fail(w, err)
		return
	case a.Disabled:
		s.oidcRefuse(w, r, http.StatusForbidden, email, "account disabled", "This account has been disabled.")
		return
	}
	if TOTPRequired(a.Role) && !s.o.OIDC.TrustIdPMFA {
		if !a.TOTP {
			s.oidcRefuse(w, r, http.StatusForbidden, email, "no second factor enrolled",
				"This account needs an authenticator app and has none set up. Ask IT to run `gatehouse accounts totp "+email+"` and give you the key.")
			return
		}
		if err := s.newSession(w, r, a, stageCodeOIDC); err != nil {
			s.sessionFailed(w, err)
			return
		}
		s.oidcContinue(w, "/signin/code", "Now enter the code from your authenticator app.")
		return
	}
	if err := s.newSession(w, r, a, stageFull); err != nil {
		s.sessionFailed(w, err)
		return
	}
	how := "oidc " + s.o.OIDC.Issuer
	if TOTPRequired(a.Role) {
		how += " (provider's MFA trusted)"
	}
	if err := s.finishSignIn(r, a, now, how); err != nil {
		s.fail(w, err)
		return
	}
	s.oidcContinue(w, "/", "You are signed in.")
}

// oidcContinue goes on from the callback with a page of the console's own
// rather than a redirect: the callback was reached from the provider's
// site, and browsers do not send SameSite=Strict cookies (the session's)
// along a redirect chain that began on another site. The page moves on at
// once (meta refresh, no script) and has a link for browsers that do not.
func (s *Server) oidcContinue(w http.ResponseWriter, to, text string) {
	s.render(w, http.StatusOK, "oidc_continue", map[string]any{"To": to, "Text": text})
}

// oneLine keeps a provider's error code short and on one line.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 100 {
		s = s[:100]
	}
	return s
}
