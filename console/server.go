package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/gatehouse-filter/gatehouse/internal/lograte"
	"github.com/gatehouse-filter/gatehouse/reports"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Incidents is what the console reads from the reports store; a second
// backend (PostgreSQL) implements the same method.
type Incidents interface {
	Incidents(reports.Filter) ([]reports.Incident, error)
}

// Options configure a Server. Zero limits take the defaults below.
type Options struct {
	Store     *Store
	Incidents Incidents
	Cases     Cases       // the incident pages (incidents.go); nil: none
	FullLog   func() bool // full logging on: an incident shows the browsing around it
	School    string
	Location  *time.Location        // the school's time zone ("today", "this week")
	Allow     func() []netip.Prefix // who may reach the console, read per request
	TLS       bool                  // served over TLS: Secure cookies and HSTS
	Idle      time.Duration         // idle timeout (default 15m)
	Absolute  time.Duration         // absolute session limit (default 12h)
	Now       func() time.Time      // the clock (default time.Now)
	Log       *slog.Logger

	// Sign-in failures allowed within FailureWindow before sign-in is
	// refused for that account (AccountFailures) or address
	// (AddrFailures, IPv6 counted per /64) until the window ends.
	AccountFailures int           // default 5
	AddrFailures    int           // default 20
	FailureWindow   time.Duration // default 15m

	IT   *IT   // the IT pages' view of the running filter (it.go)
	OIDC *OIDC // sign-in with the school's identity provider (oidc.go)
}

// Defaults.
const (
	DefaultIdle            = 15 * time.Minute
	DefaultAbsolute        = 12 * time.Hour
	DefaultAccountFailures = 5
	DefaultAddrFailures    = 20
	DefaultFailureWindow   = 15 * time.Minute
	codeStageLimit         = 5 * time.Minute // password accepted, code not yet given
)

// Server is the console's HTTP handler.
type Server struct {
	o     Options
	pages map[string]*template.Template
	h     http.Handler
	it    itState    // it.go
	oidc  *oidcState // oidc.go

	crossOrigin lograte.Counted // the "refused a cross-origin request" line: any allowed client can send them
}

// New builds a console server.
func New(o Options) (*Server, error) {
	if o.Store == nil {
		return nil, errors.New("console: no store")
	}
	if o.Idle <= 0 {
		o.Idle = DefaultIdle
	}
	if o.Absolute <= 0 {
		o.Absolute = DefaultAbsolute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Location == nil {
		o.Location = time.UTC
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.AccountFailures <= 0 {
		o.AccountFailures = DefaultAccountFailures
	}
	if o.AddrFailures <= 0 {
		o.AddrFailures = DefaultAddrFailures
	}
	if o.FailureWindow <= 0 {
		o.FailureWindow = DefaultFailureWindow
	}
	s := &Server{o: o, pages: map[string]*template.Template{}}
	if err := s.sweepSessions(); err != nil {
		return nil, fmt.Errorf("console sessions: %w", err)
	}
	funcs := template.FuncMap{
		"when": func(t time.Time) string { return t.In(o.Location).Format("Mon 2 Jan 15:04") },
	}
	maps.Copy(funcs, s.incidentFuncs())
	for _, p := range append([]string{"signin", "code", "home_dsl", "home_counts", "home_other", "audit", "message", "continue", "password", "invite", "invite_code"}, itPages...) {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/"+p+".html")
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", p, err)
		}
		s.pages[p] = t
	}
	if err := s.parsePages(funcs, incidentPages...); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /static/", http.FileServerFS(assets))
	mux.HandleFunc("GET /signin", s.signinForm)
	mux.HandleFunc("POST /signin", s.signin)
	mux.HandleFunc("GET /signin/code", s.codeForm)
	mux.HandleFunc("POST /signin/code", s.code)
	mux.HandleFunc("POST /signout", s.signout)
	mux.HandleFunc("GET /{$}", s.home)
	mux.HandleFunc("GET /audit", s.audit)
	mux.HandleFunc("GET /audit.csv", s.auditCSV)
	s.incidentRoutes(mux)
	s.accountRoutes(mux) // account.go
	s.inviteRoutes(mux)  // invite.go
	// The IT pages (it.go) and the identity provider's sign-in (oidc.go).
	s.itRoutes(mux)
	if err := s.oidcRoutes(mux); err != nil {
		return nil, err
	}
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ok, held := s.crossOrigin.Allow(s.o.Now(), 10*time.Second); ok {
			s.o.Log.Warn("console: refused a cross-origin request (logged at most every 10s)", "client", r.RemoteAddr,
				"path", r.URL.Path, "refused_since_last_log", held)
		}
		s.message(w, http.StatusForbidden, "Request refused", "This form was sent from another site, so it was refused. Open the console directly and try again.")
	}))
	s.h = s.acl(headers(o.TLS, cop.Handler(mux)))
	return s, nil
}

// parsePages parses the layout with each page's template.
func (s *Server) parsePages(funcs template.FuncMap, pages ...string) error {
	for _, p := range pages {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/"+p+".html")
		if err != nil {
			return fmt.Errorf("console template %s: %w", p, err)
		}
		s.pages[p] = t
	}
	return nil
}

// ServeHTTP serves the console.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.h.ServeHTTP(w, r) }

// headers sets the security headers on every answer.
func headers(tls bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", cspPolicy) // oidc_csp.go
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()")
		h.Set("Cache-Control", "no-store")
		if tls {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10) // forms are small
		next.ServeHTTP(w, r)
	})
}

// clientAddr is the request's peer address.
func clientAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// acl refuses clients outside the allow list with 403 and nothing more.
func (s *Server) acl(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip := clientAddr(r)
		if s.o.Allow != nil {
			for _, p := range s.o.Allow() {
				if p.Contains(ip) {
					next.ServeHTTP(w, r)
					return
				}
			}
		}
		w.Header().Set("Connection", "close")
		http.Error(w, "403 Forbidden", http.StatusForbidden)
	})
}

// cookieName: the __Host- prefix (browsers then insist on Secure, Path=/
// and no Domain) when served over TLS.
func (s *Server) cookieName() string {
	if s.o.TLS {
		return "__Host-gatehouse"
	}
	return "gatehouse"
}

func (s *Server) setCookie(w http.ResponseWriter, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: s.cookieName(), Value: value, Path: "/", MaxAge: maxAge,
		Secure: s.o.TLS, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported systems
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashToken(t string) string {
	h := sha256.Sum256([]byte(t))
	return hex.EncodeToString(h[:])
}

// session is a signed-in (or half signed-in) browser.
type session struct {
	idHash  string
	account Account
	stage   string
	csrf    string
	created time.Time
	seen    time.Time
}

// Session stages.
const (
	stageCode = "code" // password accepted, TOTP code wanted
	// stageCodeOIDC is stageCode after the identity provider's sign-in
	// (oidc.go): the same page and limit, audited as such.
	stageCodeOIDC = "code-oidc"
	stageFull     = "full"
)

// errCredentialsChanged: the account's password, second factor or state
// changed after a was read (while its password or code was checked).
var errCredentialsChanged = errors.New("console: the account changed during sign-in")

// newSession stores a session and sets its cookie. The session is written
// only if the account is still as a was read (the same password hash,
// whose salt is new at every change, and second-factor key), enabled: a
// password, second-factor or disable change ends the account's sessions,
// and a sign-in checked against the old password must not write one just
// after (argon2 takes tens of milliseconds: someone signing in over and
// over with a stolen password kept a session past the change). Otherwise
// it returns errCredentialsChanged.
func (s *Server) newSession(w http.ResponseWriter, r *http.Request, a Account, stage string) error {
	if err := s.sweepSessions(); err != nil {
		return err
	}
	tok := randomToken()
	now := s.o.Now().UnixMilli()
	res, err := s.o.Store.db.Exec(`INSERT INTO console_sessions (id_hash, account_id, stage, csrf, addr, created_ts, seen_ts)
		SELECT ?, id, ?, ?, ?, ?, ? FROM console_accounts WHERE id = ? AND pass_hash = ? AND totp_secret = ? AND disabled = 0`,
		hashToken(tok), stage, randomToken(), clientAddr(r).String(), now, now, a.ID, a.passHash, a.totpSecret)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		if err == nil {
			err = errCredentialsChanged
		}
		return err
	}
	s.setCookie(w, tok, 0)
	return nil
}

// sweepSessions deletes the sessions past their limits (as session ends
// them): one whose browser never comes back is not kept for good with
// its account, address and times. It runs at start and at every sign-in.
func (s *Server) sweepSessions() error {
	now := s.o.Now()
	_, err := s.o.Store.db.Exec(`DELETE FROM console_sessions WHERE created_ts < ? OR (stage = ? AND seen_ts < ?) OR (stage IN (?, ?) AND created_ts < ?)`,
		now.Add(-s.o.Absolute).UnixMilli(), stageFull, now.Add(-s.o.Idle).UnixMilli(),
		stageCode, stageCodeOIDC, now.Add(-codeStageLimit).UnixMilli())
	return err
}

// sessionFailed answers a sign-in whose session could not be written: the
// account changed meanwhile (sign in again, with the new password), or
// the database failed.
func (s *Server) sessionFailed(w http.ResponseWriter, err error) {
	if errors.Is(err, errCredentialsChanged) {
		s.render(w, http.StatusConflict, "signin", map[string]any{"Error": "This account's password or sign-in settings changed while you were signing in. Please sign in again."})
		return
	}
	s.fail(w, err)
}

// session finds the request's session at the stage wanted, ending it
// (and saying why in expired) when it has been idle or open too long.
func (s *Server) session(r *http.Request, stage string) (sess *session, expired string, err error) {
	c, err := r.Cookie(s.cookieName())
	if err != nil || c.Value == "" {
		return nil, "", nil
	}
	var acct int64
	var created, seen int64
	ss := &session{idHash: hashToken(c.Value)}
	err = s.o.Store.db.QueryRow(`SELECT account_id, stage, csrf, created_ts, seen_ts FROM console_sessions WHERE id_hash = ?`, ss.idHash).
		Scan(&acct, &ss.stage, &ss.csrf, &created, &seen)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	ss.created, ss.seen = time.UnixMilli(created), time.UnixMilli(seen)
	if ss.account, err = s.o.Store.accountByID(acct); err != nil {
		return nil, "", err
	}
	now := s.o.Now()
	got := ss.stage
	if got == stageCodeOIDC {
		got = stageCode
	}
	switch {
	case ss.account.Disabled:
		expired = "disabled"
	case got == stageCode && now.Sub(ss.created) > codeStageLimit:
		expired = "code"
	case ss.stage == stageFull && now.Sub(ss.seen) > s.o.Idle:
		expired = "idle"
	case now.Sub(ss.created) > s.o.Absolute:
		expired = "absolute"
	}
	if expired != "" {
		if _, err := s.o.Store.db.Exec(`DELETE FROM console_sessions WHERE id_hash = ?`, ss.idHash); err != nil {
			return nil, "", err
		}
		if ss.stage == stageFull {
			err = s.o.Store.Audit(Entry{Time: now, Actor: ss.account.Email, Addr: clientAddr(r).String(), Action: "session.expired", Target: ss.account.Email, Detail: expired})
		}
		return nil, expired, err
	}
	if got != stage {
		return nil, "", nil
	}
	if stage == stageFull {
		if _, err := s.o.Store.db.Exec(`UPDATE console_sessions SET seen_ts = ? WHERE id_hash = ?`, now.UnixMilli(), ss.idHash); err != nil {
			return nil, "", err
		}
	}
	return ss, "", nil
}

// signedIn returns the full session, or redirects to the sign-in page
// and returns nil.
func (s *Server) signedIn(w http.ResponseWriter, r *http.Request) *session {
	sess, expired, err := s.session(r, stageFull)
	if err != nil {
		s.fail(w, err)
		return nil
	}
	if sess == nil {
		q := url.Values{}
		if expired != "" {
			q.Set("expired", expired)
		}
		if r.Method == http.MethodGet && safeNext(r.URL.RequestURI()) && r.URL.Path != "/" {
			q.Set("next", r.URL.RequestURI()) // back here after sign-in (an alert's link)
		}
		u := "/signin"
		if len(q) > 0 {
			u += "?" + q.Encode()
		}
		http.Redirect(w, r, u, http.StatusSeeOther)
		return nil
	}
	return sess
}

// checkCSRF compares the form's token with the session's.
func checkCSRF(r *http.Request, sess *session) bool {
	return subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(sess.csrf)) == 1
}

// fail answers an internal error without detail.
func (s *Server) fail(w http.ResponseWriter, err error) {
	s.o.Log.Error("console: request failed", "err", err)
	s.message(w, http.StatusInternalServerError, "Something went wrong", "The console could not do that. The error is in Gatehouse's log; please tell IT.")
}

func (s *Server) render(w http.ResponseWriter, status int, page string, data map[string]any) {
	if data == nil {
		data = map[string]any{}
	}
	data["School"] = s.o.School
	if (page == "signin" || page == "oidc_continue") && s.o.OIDC != nil {
		data["OIDC"] = s.o.OIDC.Label // oidc.go
	}
	if page == "signin" {
		s.signinPolicy(w) // oidc_csp.go: the provider's button may lead there
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := s.pages[page].Execute(w, data); err != nil {
		s.o.Log.Error("console: rendering", "page", page, "err", err)
	}
}

func (s *Server) message(w http.ResponseWriter, status int, title, text string) {
	s.render(w, status, "message", map[string]any{"Title": title, "Text": text})
}

// RecordView writes "actor looked at target" to the audit log before a
// page showing a pupil's (or anyone's) record is sent; a page must not be
// shown when it fails.
func (s *Server) RecordView(r *http.Request, actor Account, target, detail string) error {
	return s.o.Store.Audit(Entry{Time: s.o.Now(), Actor: actor.Email, Addr: clientAddr(r).String(), Action: "view", Target: target, Detail: detail})
}
