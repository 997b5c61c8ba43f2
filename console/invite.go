package console

import (
	"database/sql"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse-filter/gatehouse/reports"
)

// Invitations: `gatehouse accounts add EMAIL --role ROLE --invite` (and
// `accounts passwd EMAIL --invite`) mails the person a link to the
// console's /invite page with a random 256-bit token, of which only the
// SHA-256 is stored (console_invites, one per account). The page lets
// whoever holds the link choose that one account's password (the
// CheckPassword rules) and, when its role needs one, enrol an
// authenticator app; it grants nothing else and signs nobody in: the
// person then signs in as usual. A link works once, until InviteTTL after
// it was sent; a newer link for the account replaces it. Wrong links count
// as failed sign-ins of the address (the same lockout), and every link
// sent, used, expired or refused is audited.

// noAccount is the audit log's actor for a link not (yet) matched to an account.
const noAccount = "(invitation link)"

// InviteTTL is how long an emailed link works.
const InviteTTL = 72 * time.Hour

// Invite purposes.
const (
	InviteNew   = "new"   // a new account's first password
	InviteReset = "reset" // a new password for an existing account
)

// InviteMail is what NewInvite needs to queue the mail.
type InviteMail struct {
	ConsoleURL string // console.url: the link is CONSOLE_URL/invite?t=TOKEN
	School     string
	By         string // who sends it, as the mail says ("Sam Jones, IT")
	Location   *time.Location
}

// Invitation is one account's outstanding link.
type Invitation struct {
	Account  Account
	Purpose  string
	By       string
	WantTOTP bool
	Created  time.Time
	Expires  time.Time

	passHash   string // chosen, awaiting the app's first code
	totpSecret string
}

// NewInvite creates an account with no usable password (role set; reset
// false) or clears an existing account's password and ends its sessions
// (reset true), stores a new one-time link for it (replacing any older
// one) and queues the mail with the link in the reports outbox, all in one
// transaction; then it audits the invitation. wantTOTP enrols an
// authenticator app on the link's page even where the role does not need
// one. It returns the outbox message's ID.
func (s *Store) NewInvite(actor, addr, email, role string, reset, wantTOTP bool, m InviteMail, now time.Time) (int64, error) {
	email = NormalEmail(email)
	if err := ValidEmail(email); err != nil {
		return 0, err
	}
	if m.ConsoleURL == "" {
		return 0, errors.New("console.url is not set, so a link to the console cannot be mailed; set it to the console's address as staff reach it")
	}
	if m.Location == nil {
		m.Location = time.UTC
	}
	if m.By == "" {
		m.By = "IT at " + m.School
	}
	tx, err := s.db.Begin()
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	a, err := scanAccount(tx.QueryRow(`SELECT `+accountCols+` FROM console_accounts WHERE email = ?`, email))
	switch {
	case err != nil && !errors.Is(err, ErrNoAccount):
		return 0, err
	case reset && err != nil:
		return 0, err
	case reset && a.Disabled:
		return 0, fmt.Errorf("account %s is disabled; enable it first", email)
	case !reset && err == nil:
		return 0, fmt.Errorf("account %s already exists (a new link for it: gatehouse accounts passwd %s --invite)", email, email)
	}
	purpose := InviteReset
	if reset && a.passHash == "" && !a.TOTP {
		purpose = InviteNew // a fresh link for an account never set up
	}
	if !reset {
		purpose = InviteNew
		if !ValidRole(role) {
			return 0, fmt.Errorf("unknown role %q (want one of %s)", role, strings.Join(Roles, ", "))
		}
		res, err := tx.Exec(`INSERT INTO console_accounts (email, role, pass_hash, totp_secret, created_ts, changed_ts) VALUES (?, ?, '', '', ?, ?)`,
			email, role, now.UnixMilli(), now.UnixMilli())
		if err != nil {
			return 0, err
		}
		a = Account{Email: email, Role: role}
		if a.ID, err = res.LastInsertId(); err != nil {
			return 0, err
		}
	} else {
		// The old password stops working now: a reset is sent when it is
		// forgotten or may be known to someone else.
		if _, err := tx.Exec(`UPDATE console_accounts SET pass_hash = '', changed_ts = ? WHERE id = ?`, now.UnixMilli(), a.ID); err != nil {
			return 0, err
		}
		if _, err := tx.Exec(`DELETE FROM console_sessions WHERE account_id = ?`, a.ID); err != nil {
			return 0, err
		}
	}
	wantTOTP = (wantTOTP || TOTPRequired(a.Role)) && !a.TOTP
	token := randomToken()
	expires := now.Add(InviteTTL)
	var replaced int
	if err := tx.QueryRow(`SELECT count(*) FROM console_invites WHERE account_id = ?`, a.ID).Scan(&replaced); err != nil {
		return 0, err
	}
	if _, err := tx.Exec(`DELETE FROM console_invites WHERE account_id = ?`, a.ID); err != nil {
		return 0, err
	}
	if _, err := tx.Exec(`INSERT INTO console_invites (account_id, token_hash, purpose, by_name, want_totp, created_ts, expires_ts) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		a.ID, hashToken(token), purpose, m.By, wantTOTP, now.UnixMilli(), expires.UnixMilli()); err != nil {
		return 0, err
	}
	subject, text := inviteText(a, purpose, wantTOTP, m, token, expires)
	msg := &reports.Message{Kind: reports.KindInvite, Role: a.Role, Recipients: []string{a.Email}, Subject: subject, Text: text}
	if err := reports.Enqueue(tx, msg, fmt.Sprintf("invite-%d-%d", a.ID, now.UnixNano()), now); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	detail := fmt.Sprintf("%s link mailed to %s by %q; expires %s; role=%s totp=%t", purpose, a.Email, m.By,
		expires.UTC().Format(time.RFC3339), a.Role, wantTOTP)
	if replaced > 0 {
		detail += "; the earlier link no longer works"
	}
	if reset {
		detail += "; old password cleared, sessions ended"
	}
	return msg.ID, s.Audit(Entry{Time: now, Actor: actor, Addr: addr, Action: "invite.sent", Target: a.Email, Detail: detail})
}

// roleWork says what the console is for, for the role, in the mail.
var roleWork = map[string]string{
	RoleDSL:         "where the Designated Safeguarding Lead and deputies see the web filter's safeguarding alerts and record what was done about them",
	RoleHeadteacher: "where the headteacher sees the web filter's alerts about staff and records what was done about them",
	RoleIT:          "where IT sees why a site was blocked, manages the filter's allow and deny lists and answers requests to unblock a site",
	RoleAuditor:     "where the audit log shows who looked at or changed a safeguarding record",
}

// inviteText is the mail: short and plain, for a teacher.
func inviteText(a Account, purpose string, wantTOTP bool, m InviteMail, token string, expires time.Time) (subject, text string) {
	link := strings.TrimRight(m.ConsoleURL, "/") + "/invite?t=" + token
	var b strings.Builder
	b.WriteString("Hello,\n\n")
	if purpose == InviteReset {
		subject = "Set a new password for the safeguarding console"
		fmt.Fprintf(&b, "%s has sent you a link to set a new password for your account (%s) on %s's safeguarding console, %s. Your old password no longer works.\n\n",
			m.By, a.Email, m.School, roleWork[a.Role])
	} else {
		subject = "Your account on the safeguarding console"
		fmt.Fprintf(&b, "%s has made you an account (%s) on %s's safeguarding console: the web page %s.\n\n",
			m.By, a.Email, m.School, roleWork[a.Role])
	}
	fmt.Fprintf(&b, "To choose your password, open this link. It works once, until %s:\n\n%s\n\n",
		expires.In(m.Location).Format("15:04 on Monday 2 January"), link)
	if wantTOTP {
		b.WriteString("You will also need an authenticator app on your phone (such as Microsoft Authenticator or Google Authenticator): the page shows how to add the console to it.\n\n")
	}
	b.WriteString("Then sign in with your email address and your new password.\n\n")
	b.WriteString("If you did not expect this email, do not open the link: tell IT.\n")
	return subject, b.String()
}

// invitation finds the link whose token is tok (ErrNoInvite when there
// is none).
func (s *Store) invitation(tok string) (Invitation, error) {
	var iv Invitation
	var id, created, expires int64
	var want int
	err := s.db.QueryRow(`SELECT account_id, purpose, by_name, want_totp, created_ts, expires_ts, pass_hash, totp_secret FROM console_invites WHERE token_hash = ?`,
		hashToken(tok)).Scan(&id, &iv.Purpose, &iv.By, &want, &created, &expires, &iv.passHash, &iv.totpSecret)
	if errors.Is(err, sql.ErrNoRows) {
		return iv, ErrNoInvite
	}
	if err != nil {
		return iv, err
	}
	iv.WantTOTP = want != 0
	iv.Created, iv.Expires = time.UnixMilli(created).UTC(), time.UnixMilli(expires).UTC()
	iv.Account, err = s.accountByID(id)
	return iv, err
}

// ErrNoInvite is returned for a link that does not exist (never sent,
// used, replaced or mistyped).
var ErrNoInvite = errors.New("no such invitation")

// Invitations lists the outstanding links by account ID.
func (s *Store) Invitations() (map[int64]time.Time, error) {
	rows, err := s.db.Query(`SELECT account_id, expires_ts FROM console_invites`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int64]time.Time{}
	for rows.Next() {
		var id, exp int64
		if err := rows.Scan(&id, &exp); err != nil {
			return nil, err
		}
		out[id] = time.UnixMilli(exp).UTC()
	}
	return out, rows.Err()
}

// useInvite sets the account's password (and second factor, with the last
// accepted code step) from the link tok and deletes the link, all or
// nothing; false when the link was used meanwhile.
func (s *Store) useInvite(tok string, a Account, passHash, totpSecret string, totpStep int64, now time.Time) (bool, error) {
	tx, err := s.db.Begin()
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	res, err := tx.Exec(`DELETE FROM console_invites WHERE token_hash = ? AND account_id = ?`, hashToken(tok), a.ID)
	if err != nil {
		return false, err
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return false, err
	}
	if totpSecret != "" {
		_, err = tx.Exec(`UPDATE console_accounts SET pass_hash = ?, totp_secret = ?, totp_last = ?, changed_ts = ? WHERE id = ?`,
			passHash, totpSecret, totpStep, now.UnixMilli(), a.ID)
	} else {
		_, err = tx.Exec(`UPDATE console_accounts SET pass_hash = ?, changed_ts = ? WHERE id = ?`, passHash, now.UnixMilli(), a.ID)
	}
	if err != nil {
		return false, err
	}
	if _, err := tx.Exec(`DELETE FROM console_sessions WHERE account_id = ?`, a.ID); err != nil {
		return false, err
	}
	return true, tx.Commit()
}

// The /invite pages.

func (s *Server) inviteRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /invite", s.inviteForm)
	mux.HandleFunc("POST /invite", s.invitePassword)
	mux.HandleFunc("POST /invite/code", s.inviteCode)
}

// openInvite finds the request's link, answering (and returning false)
// when the address is locked out, or the link is unknown, expired or for
// a disabled account; each of those is audited and a wrong link counts as
// a failed sign-in of the address.
func (s *Server) openInvite(w http.ResponseWriter, r *http.Request, tok string) (Invitation, bool) {
	now, addr := s.o.Now(), clientAddr(r)
	until, err := s.lockedUntil(addrKey(addr), s.o.AddrFailures, now)
	if err != nil {
		s.fail(w, err)
		return Invitation{}, false
	}
	if !until.IsZero() {
		if err := s.o.Store.Audit(Entry{Time: now, Actor: noAccount, Addr: addr.String(), Action: "invite.locked", Target: "", Detail: "too many failed attempts from this address"}); err != nil {
			s.fail(w, err)
			return Invitation{}, false
		}
		s.message(w, http.StatusTooManyRequests, "Too many attempts",
			fmt.Sprintf("This computer's network address has made too many failed attempts. Try again after %s, or ask IT.", until.In(s.o.Location).Format("15:04")))
		return Invitation{}, false
	}
	var iv Invitation
	if len(tok) > 0 && len(tok) <= 128 {
		iv, err = s.o.Store.invitation(tok)
	} else {
		err = ErrNoInvite
	}
	if errors.Is(err, ErrNoInvite) {
		if err := s.failed("", addr, now); err != nil {
			s.fail(w, err)
			return Invitation{}, false
		}
		if err := s.o.Store.Audit(Entry{Time: now, Actor: noAccount, Addr: addr.String(), Action: "invite.fail", Target: "", Detail: "unknown, used or replaced link"}); err != nil {
			s.fail(w, err)
			return Invitation{}, false
		}
		s.message(w, http.StatusNotFound, "This link does not work",
			"This link has already been used, has been replaced by a newer one, or was not copied whole. If you have set your password, sign in. If not, ask IT to send you a new link.")
		return Invitation{}, false
	}
	if err != nil {
		s.fail(w, err)
		return Invitation{}, false
	}
	a := iv.Account
	if !now.Before(iv.Expires) {
		if _, err := s.o.Store.db.Exec(`DELETE FROM console_invites WHERE account_id = ?`, a.ID); err != nil {
			s.fail(w, err)
			return Invitation{}, false
		}
		if err := s.o.Store.Audit(Entry{Time: now, Actor: a.Email, Addr: addr.String(), Action: "invite.expired", Target: a.Email,
			Detail: "link sent " + iv.Created.Format(time.RFC3339) + " expired " + iv.Expires.Format(time.RFC3339)}); err != nil {
			s.fail(w, err)
			return Invitation{}, false
		}
		s.message(w, http.StatusGone, "This link has expired",
			fmt.Sprintf("The link stopped working at %s. Ask IT to send you a new one.", iv.Expires.In(s.o.Location).Format("15:04 on Monday 2 January")))
		return Invitation{}, false
	}
	if a.Disabled {
		if err := s.o.Store.Audit(Entry{Time: now, Actor: a.Email, Addr: addr.String(), Action: "invite.fail", Target: a.Email, Detail: "account disabled"}); err != nil {
			s.fail(w, err)
			return Invitation{}, false
		}
		s.message(w, http.StatusForbidden, "Account disabled", "This account has been disabled. Ask IT.")
		return Invitation{}, false
	}
	return iv, true
}

// inviteData is the data of the link's pages.
func (s *Server) inviteData(iv Invitation, tok string) map[string]any {
	return map[string]any{"Token": tok, "Email": iv.Account.Email, "RoleName": roleName(iv.Account.Role),
		"Reset": iv.Purpose == InviteReset, "Expires": iv.Expires, "TOTP": iv.WantTOTP}
}

func (s *Server) inviteForm(w http.ResponseWriter, r *http.Request) {
	tok := r.URL.Query().Get("t")
	iv, ok := s.openInvite(w, r, tok)
	if !ok {
		return
	}
	if iv.passHash != "" && iv.totpSecret != "" { // password chosen: the app is next
		s.renderInviteCode(w, http.StatusOK, iv, tok, "")
		return
	}
	s.render(w, http.StatusOK, "invite", s.inviteData(iv, tok))
}

func (s *Server) invitePassword(w http.ResponseWriter, r *http.Request) {
	tok := r.PostFormValue("t")
	iv, ok := s.openInvite(w, r, tok)
	if !ok {
		return
	}
	now, addr, a := s.o.Now(), clientAddr(r), iv.Account
	refuse := func(text string) {
		data := s.inviteData(iv, tok)
		data["Error"] = text
		s.render(w, http.StatusBadRequest, "invite", data)
	}
	next, again := r.PostFormValue("new"), r.PostFormValue("again")
	if len(again) > 1024 {
		refuse("That password is too long.")
		return
	}
	if next != again {
		refuse("The two passwords differ. Type the same password in both boxes.")
		return
	}
	if err := CheckPassword(a.Email, next); err != nil {
		if errors.Is(err, ErrWeakPassword) {
			reason := strings.TrimPrefix(strings.TrimPrefix(err.Error(), ErrWeakPassword.Error()), ": ")
			refuse("That password was refused: " + reason + ".")
			return
		}
		s.fail(w, err)
		return
	}
	h, err := HashPassword(next)
	if err != nil {
		s.fail(w, err)
		return
	}
	if iv.WantTOTP {
		// The password is held with the link until the app gives its
		// first code, so the account never has one without the other.
		secret, err := NewTOTPSecret()
		if err != nil {
			s.fail(w, err)
			return
		}
		res, err := s.o.Store.db.Exec(`UPDATE console_invites SET pass_hash = ?, totp_secret = ? WHERE token_hash = ?`, h, secret, hashToken(tok))
		if err != nil {
			s.fail(w, err)
			return
		}
		if n, _ := res.RowsAffected(); n != 1 {
			s.message(w, http.StatusNotFound, "This link does not work", "This link has just been used or replaced. Ask IT to send you a new one.")
			return
		}
		iv.passHash, iv.totpSecret = h, secret
		s.renderInviteCode(w, http.StatusOK, iv, tok, "")
		return
	}
	used, err := s.o.Store.useInvite(tok, a, h, "", 0, now)
	if err != nil {
		s.fail(w, err)
		return
	}
	s.inviteDone(w, iv, used, addr.String(), now)
}

// renderInviteCode shows the authenticator app's key and asks for its
// first code.
func (s *Server) renderInviteCode(w http.ResponseWriter, status int, iv Invitation, tok, errText string) {
	data := s.inviteData(iv, tok)
	data["Key"] = GroupKey(iv.totpSecret)
	// An otpauth: link, made here from the secret alone.
	data["URI"] = template.URL(TOTPURI("Gatehouse ("+s.o.School+")", iv.Account.Email, iv.totpSecret))
	if errText != "" {
		data["Error"] = errText
	}
	s.render(w, status, "invite_code", data)
}

func (s *Server) inviteCode(w http.ResponseWriter, r *http.Request) {
	tok := r.PostFormValue("t")
	iv, ok := s.openInvite(w, r, tok)
	if !ok {
		return
	}
	now, addr, a := s.o.Now(), clientAddr(r), iv.Account
	if iv.passHash == "" || iv.totpSecret == "" { // the password step first
		s.render(w, http.StatusOK, "invite", s.inviteData(iv, tok))
		return
	}
	// Codes are guessed against the account as at sign-in (5 a window).
	until, err := s.lockedUntil("account:"+a.Email, s.o.AccountFailures, now)
	if err != nil {
		s.fail(w, err)
		return
	}
	if !until.IsZero() {
		if err := s.o.Store.Audit(Entry{Time: now, Actor: a.Email, Addr: addr.String(), Action: "invite.locked", Target: a.Email, Detail: "too many wrong codes"}); err != nil {
			s.fail(w, err)
			return
		}
		s.message(w, http.StatusTooManyRequests, "Too many attempts",
			fmt.Sprintf("Too many wrong codes have been entered for this account. Try again after %s with the same link, or ask IT.", until.In(s.o.Location).Format("15:04")))
		return
	}
	step := totpMatch(iv.totpSecret, r.PostFormValue("code"), now)
	if step < 0 {
		if err := s.failed(a.Email, addr, now); err != nil {
			s.fail(w, err)
			return
		}
		if err := s.o.Store.Audit(Entry{Time: now, Actor: a.Email, Addr: addr.String(), Action: "invite.fail", Target: a.Email, Detail: "wrong authenticator code"}); err != nil {
			s.fail(w, err)
			return
		}
		s.renderInviteCode(w, http.StatusUnauthorized, iv, tok,
			"That code is not right. Check the app shows Gatehouse with the key below, then enter the 6-digit code it shows now.")
		return
	}
	used, err := s.o.Store.useInvite(tok, a, iv.passHash, iv.totpSecret, step, now)
	if err != nil {
		s.fail(w, err)
		return
	}
	s.inviteDone(w, iv, used, addr.String(), now)
}

// inviteDone audits a used link and sends the person to sign in.
func (s *Server) inviteDone(w http.ResponseWriter, iv Invitation, used bool, addr string, now time.Time) {
	a := iv.Account
	if !used {
		s.message(w, http.StatusNotFound, "This link does not work", "This link has just been used or replaced. Ask IT to send you a new one.")
		return
	}
	if err := s.o.Store.Audit(Entry{Time: now, Actor: a.Email, Addr: addr, Action: "invite.used", Target: a.Email,
		Detail: fmt.Sprintf("%s password set; authenticator app enrolled=%t", iv.Purpose, iv.totpSecret != "")}); err != nil {
		s.fail(w, err)
		return
	}
	s.render(w, http.StatusOK, "signin", map[string]any{"Email": a.Email,
		"Note": "Your password is set. Sign in with it now" + map[bool]string{true: " and then the code from your authenticator app.", false: "."}[iv.totpSecret != ""]})
}
