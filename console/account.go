package console

import (
	"errors"
	"net/http"
	"strings"
)

// The signed-in account's own page: changing its password, with the same
// policy as `gatehouse accounts passwd` (CheckPassword), so a refusal says
// which rule the new password broke. A wrong current password counts as a
// failed sign-in (the same lockout).

// accountRoutes adds the account pages to mux.
func (s *Server) accountRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /account/password", s.passwordForm)
	mux.HandleFunc("POST /account/password", s.changePassword)
}

func (s *Server) passwordForm(w http.ResponseWriter, r *http.Request) {
	sess := s.signedIn(w, r)
	if sess == nil {
		return
	}
	s.render(w, http.StatusOK, "password", s.accountData(sess))
}

func (s *Server) changePassword(w http.ResponseWriter, r *http.Request) {
	sess := s.signedInPost(w, r)
	if sess == nil {
		return
	}
	now, addr, a := s.o.Now(), clientAddr(r), sess.account
	refuse := func(status int, text string) {
		data := s.accountData(sess)
		data["Error"] = text
		s.render(w, status, "password", data)
	}
	current, next, again := r.PostFormValue("current"), r.PostFormValue("new"), r.PostFormValue("again")
	if len(current) > 1024 || len(again) > 1024 {
		refuse(http.StatusBadRequest, "That password is too long.")
		return
	}
	if !s.attempt(w, a.Email, addr, now) {
		return
	}
	if !checkHash(a.passHash, current) { // counted as failed already (attempt)
		if err := s.o.Store.Audit(Entry{Time: now, Actor: a.Email, Addr: addr.String(), Action: "account.passwd.fail", Target: a.Email, Detail: "wrong current password"}); err != nil {
			s.fail(w, err)
			return
		}
		refuse(http.StatusUnauthorized, "Your current password is not right, so the password was not changed.")
		return
	}
	if err := s.refund(a.Email, addr); err != nil {
		s.fail(w, err)
		return
	}
	if next != again {
		refuse(http.StatusBadRequest, "The two new passwords differ. Type the same new password in both boxes.")
		return
	}
	if next == current {
		refuse(http.StatusBadRequest, "The new password is the same as the current one. Choose a new password.")
		return
	}
	// SetPassword checks the policy, ends every session of the account and
	// audits the change; this browser then gets a new session.
	if err := s.o.Store.SetPassword(a.Email, addr.String(), a.Email, next, now); err != nil {
		if errors.Is(err, ErrWeakPassword) {
			reason := strings.TrimPrefix(strings.TrimPrefix(err.Error(), ErrWeakPassword.Error()), ": ")
			refuse(http.StatusBadRequest, "That password was refused: "+reason+".")
			return
		}
		s.fail(w, err)
		return
	}
	a, err := s.o.Store.Account(a.Email) // as changed: the new session is the new password's
	if err != nil {
		s.fail(w, err)
		return
	}
	if err := s.newSession(w, r, a, stageFull); err != nil {
		s.sessionFailed(w, err)
		return
	}
	s.message(w, http.StatusOK, "Password changed",
		"Your password has been changed. Any other browser signed in to this account has been signed out.")
}

// accountData is the layout's data for the account pages (IT's links too).
func (s *Server) accountData(sess *session) map[string]any {
	d := base(sess)
	d["IT"] = sess.account.Role == RoleIT && s.o.IT != nil
	return d
}
