package console

import (
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

var expiredText = map[string]string{
	"idle":     "You were signed out after 15 minutes without activity. Please sign in again.",
	"absolute": "Your session reached its time limit. Please sign in again.",
	"code":     "The code was not given in time. Please sign in again.",
	"disabled": "This account has been disabled.",
}

func (s *Server) signinForm(w http.ResponseWriter, r *http.Request) {
	next := nextPage(r.URL.Query().Get("next"))
	if sess, _, err := s.session(r, stageFull); err == nil && sess != nil {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	if crossSiteNavigation(r) { // samesite.go
		s.sameSiteContinue(w, r)
		return
	}
	note := expiredText[r.URL.Query().Get("expired")]
	if note == "" && r.URL.Query().Has("expired") {
		note = "Please sign in again."
	}
	s.render(w, http.StatusOK, "signin", map[string]any{"Note": note, "Next": next})
}

// addrKey is the failure-count key of the client's address: IPv6
// counted per /64 (one host's usual allocation).
func addrKey(a netip.Addr) string {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return "addr:" + p.String()
	}
	return "addr:" + a.String()
}

// lockedUntil returns when sign-in opens again for key (zero: not locked).
func (s *Server) lockedUntil(key string, max int, now time.Time) (time.Time, error) {
	var count int
	var first int64
	err := s.o.Store.db.QueryRow(`SELECT count, first_ts FROM console_failures WHERE key = ?`, key).Scan(&count, &first)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	end := time.UnixMilli(first).Add(s.o.FailureWindow)
	if count >= max && now.Before(end) {
		return end, nil
	}
	return time.Time{}, nil
}

// failed counts a failed sign-in against the account (none when email
// is "": a wrong invitation link) and the address.
func (s *Server) failed(email string, addr netip.Addr, now time.Time) error {
	db := s.o.Store.db
	n, start := now.UnixMilli(), now.Add(-s.o.FailureWindow).UnixMilli()
	if _, err := db.Exec(`DELETE FROM console_failures WHERE first_ts <= ?`, start); err != nil {
		return err
	}
	keys := []string{addrKey(addr)}
	if email != "" {
		keys = append(keys, "account:"+email)
	}
	for _, k := range keys {
		if _, err := db.Exec(`INSERT INTO console_failures (key, count, first_ts) VALUES (?, 1, ?)
			ON CONFLICT (key) DO UPDATE SET count = count + 1`, k, n); err != nil {
			return err
		}
	}
	return nil
}

// charge counts an attempt (a password, a code or the current password)
// as failed against the account and the address before it is checked, in
// one transaction with the check of both limits, so that guesses sent at
// once are held to the limit as guesses sent one after another are (each
// used to read the count, spend tens of milliseconds on argon2, and only
// then count its failure: forty sent together were all checked). An
// attempt that succeeds is given back (refund). It returns when sign-in
// opens again and for what (zero: not locked; the attempt was counted).
func (s *Server) charge(email string, addr netip.Addr, now time.Time) (until time.Time, who string, err error) {
	tx, err := s.o.Store.db.Begin() // IMMEDIATE: one attempt at a time reads and counts
	if err != nil {
		return time.Time{}, "", err
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`DELETE FROM console_failures WHERE first_ts <= ?`, now.Add(-s.o.FailureWindow).UnixMilli()); err != nil {
		return time.Time{}, "", err
	}
	keys := []struct {
		key, who string
		max      int
	}{{"account:" + email, "this account", s.o.AccountFailures}, {addrKey(addr), "this computer's network address", s.o.AddrFailures}}
	for _, k := range keys {
		var count int
		var first int64
		err := tx.QueryRow(`SELECT count, first_ts FROM console_failures WHERE key = ?`, k.key).Scan(&count, &first)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return time.Time{}, "", err
		}
		if end := time.UnixMilli(first).Add(s.o.FailureWindow); count >= k.max && now.Before(end) && end.After(until) {
			until, who = end, k.who
		}
	}
	if until.IsZero() {
		for _, k := range keys {
			if _, err := tx.Exec(`INSERT INTO console_failures (key, count, first_ts) VALUES (?, 1, ?)
				ON CONFLICT (key) DO UPDATE SET count = count + 1`, k.key, now.UnixMilli()); err != nil {
				return time.Time{}, "", err
			}
		}
	}
	return until, who, tx.Commit()
}

// refund gives back an attempt charge counted that succeeded.
func (s *Server) refund(email string, addr netip.Addr) error {
	tx, err := s.o.Store.db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, k := range []string{"account:" + email, addrKey(addr)} {
		if _, err := tx.Exec(`UPDATE console_failures SET count = count - 1 WHERE key = ? AND count > 0`, k); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(`DELETE FROM console_failures WHERE count <= 0`); err != nil {
		return err
	}
	return tx.Commit()
}

// attempt charges an attempt (charge) and, when sign-in is locked for
// the account or the address, answers the lockout page; it returns false
// when it did.
func (s *Server) attempt(w http.ResponseWriter, email string, addr netip.Addr, now time.Time) bool {
	until, who, err := s.charge(email, addr, now)
	if err != nil {
		s.fail(w, err)
		return false
	}
	return !s.lockout(w, email, addr, now, until, who)
}

// locked checks both keys without counting an attempt and, when one is
// locked, answers the lockout page; it returns true when it did.
func (s *Server) locked(w http.ResponseWriter, email string, addr netip.Addr, now time.Time) bool {
	acct, err := s.lockedUntil("account:"+email, s.o.AccountFailures, now)
	if err != nil {
		s.fail(w, err)
		return true
	}
	ad, err := s.lockedUntil(addrKey(addr), s.o.AddrFailures, now)
	if err != nil {
		s.fail(w, err)
		return true
	}
	until, who := acct, "this account"
	if ad.After(until) {
		until, who = ad, "this computer's network address"
	}
	return s.lockout(w, email, addr, now, until, who)
}

// lockout answers the lockout page when until is set, auditing it; it
// returns true when it did.
func (s *Server) lockout(w http.ResponseWriter, email string, addr netip.Addr, now, until time.Time, who string) bool {
	if until.IsZero() {
		return false
	}
	if err := s.o.Store.Audit(Entry{Time: now, Actor: email, Addr: addr.String(), Action: "signin.locked", Target: email, Detail: who}); err != nil {
		s.fail(w, err)
		return true
	}
	s.render(w, http.StatusTooManyRequests, "signin", map[string]any{"Email": email,
		"Error": fmt.Sprintf("Sign-in is locked for %s after too many failed attempts. Try again after %s, or ask IT to check the account.",
			who, until.In(s.o.Location).Format("15:04"))})
	return true
}

func (s *Server) signin(w http.ResponseWriter, r *http.Request) {
	now := s.o.Now()
	addr := clientAddr(r)
	email := NormalEmail(r.PostFormValue("email"))
	password := r.PostFormValue("password")
	if len(email) > 254 || len(password) > 1024 {
		s.message(w, http.StatusBadRequest, "Sign-in refused", "That email address or password is too long.")
		return
	}
	if !s.attempt(w, email, addr, now) {
		return
	}
	a, err := s.o.Store.Account(email)
	if err != nil && !errors.Is(err, ErrNoAccount) {
		s.fail(w, err)
		return
	}
	ok := false
	if err == nil {
		ok = checkHash(a.passHash, password) && !a.Disabled
	} else {
		checkHash(dummyHash, password) // the same work for unknown names
	}
	if !ok {
		reason := "wrong password"
		switch {
		case err != nil:
			reason = "no such account"
		case a.Disabled:
			reason = "account disabled"
		}
		// The attempt was counted as failed before it was checked (attempt).
		if err := s.o.Store.Audit(Entry{Time: now, Actor: email, Addr: addr.String(), Action: "signin.fail", Target: email, Detail: reason}); err != nil {
			s.fail(w, err)
			return
		}
		s.render(w, http.StatusUnauthorized, "signin", map[string]any{"Email": email,
			"Error": "That email address and password do not match an account that can sign in."})
		return
	}
	if err := s.refund(email, addr); err != nil {
		s.fail(w, err)
		return
	}
	if TOTPRequired(a.Role) && !a.TOTP {
		if err := s.o.Store.Audit(Entry{Time: now, Actor: email, Addr: addr.String(), Action: "signin.fail", Target: email, Detail: "no second factor enrolled"}); err != nil {
			s.fail(w, err)
			return
		}
		s.message(w, http.StatusForbidden, "Second factor needed",
			"This account needs an authenticator app and has none set up. Ask IT to run `gatehouse accounts totp "+email+"` and give you the key.")
		return
	}
	stage := stageFull
	if a.TOTP {
		stage = stageCode
	}
	if err := s.newSession(w, r, a, stage); err != nil {
		s.sessionFailed(w, err)
		return
	}
	next := nextPage(r.PostFormValue("next"))
	if stage == stageCode {
		http.Redirect(w, r, "/signin/code?"+url.Values{"next": {next}}.Encode(), http.StatusSeeOther)
		return
	}
	s.signedInOK(w, r, a, now, "password", next)
}

// safeNext reports whether p is a page of this console to go back to
// after sign-in: a path on this host, never another site ("//host",
// "/\\host", "https://...").
func safeNext(p string) bool {
	if p == "" || len(p) > 1024 || p[0] != '/' || strings.HasPrefix(p, "//") || strings.ContainsAny(p, "\\\r\n\t") {
		return false
	}
	u, err := url.Parse(p)
	return err == nil && u.Scheme == "" && u.Host == "" && u.User == nil && strings.HasPrefix(u.Path, "/") && !strings.HasPrefix(u.Path, "/signin")
}

// nextPage is p when safeNext allows it, else home.
func nextPage(p string) string {
	if safeNext(p) {
		return p
	}
	return "/"
}

// signedInOK finishes a sign-in: clears the account's failures, audits
// it and goes to next (home, or the page that asked for sign-in).
func (s *Server) signedInOK(w http.ResponseWriter, r *http.Request, a Account, now time.Time, how, next string) {
	if err := s.finishSignIn(r, a, now, how); err != nil {
		s.fail(w, err)
		return
	}
	http.Redirect(w, r, nextPage(next), http.StatusSeeOther)
}

// finishSignIn clears the account's failures and audits the sign-in.
func (s *Server) finishSignIn(r *http.Request, a Account, now time.Time, how string) error {
	if _, err := s.o.Store.db.Exec(`DELETE FROM console_failures WHERE key = ?`, "account:"+a.Email); err != nil {
		return err
	}
	return s.o.Store.Audit(Entry{Time: now, Actor: a.Email, Addr: clientAddr(r).String(), Action: "signin", Target: a.Email, Detail: how})
}

func (s *Server) codeForm(w http.ResponseWriter, r *http.Request) {
	sess, expired, err := s.session(r, stageCode)
	if err != nil {
		s.fail(w, err)
		return
	}
	if sess == nil {
		http.Redirect(w, r, "/signin?expired="+expired, http.StatusSeeOther)
		return
	}
	s.render(w, http.StatusOK, "code", map[string]any{"CSRF": sess.csrf, "Next": nextPage(r.URL.Query().Get("next"))})
}

func (s *Server) code(w http.ResponseWriter, r *http.Request) {
	now := s.o.Now()
	addr := clientAddr(r)
	sess, expired, err := s.session(r, stageCode)
	if err != nil {
		s.fail(w, err)
		return
	}
	if sess == nil {
		http.Redirect(w, r, "/signin?expired="+expired, http.StatusSeeOther)
		return
	}
	if !checkCSRF(r, sess) {
		s.message(w, http.StatusForbidden, "Request refused", "The form had expired. Please sign in again.")
		return
	}
	a := sess.account
	if !s.attempt(w, a.Email, addr, now) {
		if err := s.endSession(sess); err != nil {
			s.o.Log.Error("console: ending a session", "err", err)
		}
		return
	}
	step := totpMatch(a.totpSecret, r.PostFormValue("code"), now)
	ok := step >= 0
	if ok {
		if ok, err = s.o.Store.useTOTPStep(a.ID, step); err != nil {
			s.fail(w, err)
			return
		}
	}
	if !ok { // counted as failed already (attempt)
		if err := s.o.Store.Audit(Entry{Time: now, Actor: a.Email, Addr: addr.String(), Action: "signin.fail", Target: a.Email, Detail: "wrong or reused code"}); err != nil {
			s.fail(w, err)
			return
		}
		s.render(w, http.StatusUnauthorized, "code", map[string]any{"CSRF": sess.csrf, "Next": nextPage(r.PostFormValue("next")),
			"Error": "That code is wrong or has been used. Enter the 6-digit code your authenticator app shows now."})
		return
	}
	if err := s.refund(a.Email, addr); err != nil {
		s.fail(w, err)
		return
	}
	// A new session ID for the signed-in stage.
	if err := s.endSession(sess); err != nil {
		s.fail(w, err)
		return
	}
	if err := s.newSession(w, r, a, stageFull); err != nil {
		s.sessionFailed(w, err)
		return
	}
	how := "password and code"
	if sess.stage == stageCodeOIDC {
		how = "oidc " + s.o.OIDC.Issuer + " and code"
	}
	s.signedInOK(w, r, a, now, how, r.PostFormValue("next"))
}

func (s *Server) endSession(sess *session) error {
	_, err := s.o.Store.db.Exec(`DELETE FROM console_sessions WHERE id_hash = ?`, sess.idHash)
	return err
}

func (s *Server) signout(w http.ResponseWriter, r *http.Request) {
	sess := s.signedInPost(w, r)
	if sess == nil {
		return
	}
	if err := s.endSession(sess); err != nil {
		s.fail(w, err)
		return
	}
	s.setCookie(w, "", -1)
	if err := s.o.Store.Audit(Entry{Time: s.o.Now(), Actor: sess.account.Email, Addr: clientAddr(r).String(), Action: "signout", Target: sess.account.Email}); err != nil {
		s.fail(w, err)
		return
	}
	s.render(w, http.StatusOK, "signin", map[string]any{"Note": "You have signed out."})
}

// roleName is how a role is shown.
func roleName(r string) string {
	switch r {
	case RoleDSL:
		return "Designated Safeguarding Lead"
	case RoleIT:
		return "IT"
	}
	return strings.ToUpper(r[:1]) + r[1:]
}
