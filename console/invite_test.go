package console

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-filter/gatehouse/reports"
)

// inviteRig is a console whose invitation mail goes over SMTP to a
// go-smtp server in the test process.
type inviteRig struct {
	*rig
	sink   *smtpSink
	mailer *reports.Mailer
}

func newInviteRig(t *testing.T) *inviteRig {
	t.Helper()
	r := newRig(t, false)
	ir := &inviteRig{rig: r, sink: newSMTPSink(t)}
	ir.mailer = reports.NewMailer(r.rep, reports.MailConfig{Host: "127.0.0.1", Port: ir.sink.port, From: "gatehouse@school.example", TLS: "none",
		Timeout: 5 * time.Second, Dir: t.TempDir()}, nil, r.clock.Now)
	return ir
}

var inviteLinkRE = regexp.MustCompile(`http://127\.0\.0\.1:\d+/invite\?t=[A-Za-z0-9_-]+`)

// invite sends a link as `gatehouse accounts add|passwd --invite` does and
// returns the mail as read and the link in it.
func (ir *inviteRig) invite(email, role string, reset bool) (mail, link string) {
	ir.t.Helper()
	before := len(ir.sink.messages())
	if _, err := ir.st.NewInvite("cli:test", "cli", email, role, reset, false, InviteMail{ConsoleURL: ir.http.URL + "/", School: "Test Primary",
		By: "Sam Jones (IT)"}, ir.clock.Now()); err != nil {
		ir.t.Fatal(err)
	}
	if _, err := ir.mailer.DeliverDue(context.Background()); err != nil {
		ir.t.Fatal(err)
	}
	msgs := ir.sink.messages()
	if len(msgs) != before+1 {
		ir.t.Fatalf("%d mails delivered, want %d", len(msgs), before+1)
	}
	mail = readable(ir.t.(*testing.T), msgs[len(msgs)-1])
	link = inviteLinkRE.FindString(mail)
	if link == "" {
		ir.t.Fatalf("no link in the invitation:\n%s", mail)
	}
	return mail, link
}

// path is the link's path and query on the rig's server.
func (ir *inviteRig) path(link string) string { return strings.TrimPrefix(link, ir.http.URL) }

func tokenOf(link string) string { _, t, _ := strings.Cut(link, "?t="); return t }

// keyOf reads the authenticator key from the link's second page.
func keyOf(t *testing.T, body string) string {
	t.Helper()
	m := regexp.MustCompile(`id="key">([A-Z2-7 ]+)<`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no authenticator key on the page:\n%s", body)
	}
	return strings.ReplaceAll(m[1], " ", "")
}

// TestInviteLinkSetsPasswordAndTOTP: the mailed link lets the new DSL
// choose a password (a weak one refused, saying why), enrol an
// authenticator app (a wrong code refused) and then sign in; the link
// works once, and only its hash is kept.
func TestInviteLinkSetsPasswordAndTOTP(t *testing.T) {
	ir := newInviteRig(t)
	mail, link := ir.invite("New.DSL@school.example", RoleDSL, false)
	for _, want := range []string{"Your account on the safeguarding console\n", "Sam Jones (IT) has made you an account (new.dsl@school.example)",
		"Test Primary's safeguarding console", "Designated Safeguarding Lead", "It works once, until 10:00 on Saturday 5 December",
		"authenticator app", "If you did not expect this email, do not open the link: tell IT."} {
		if !strings.Contains(mail, want) {
			t.Errorf("the mail lacks %q:\n%s", want, mail)
		}
	}
	tok := tokenOf(link)
	if raw, err := base64.RawURLEncoding.DecodeString(tok); err != nil || len(raw)*8 < 128 {
		t.Fatalf("token %q: %d bits, %v", tok, len(raw)*8, err)
	}
	// Neither the invitation nor the delivered mail keeps the token.
	var stored, body string
	if err := ir.rep.DB().QueryRow(`SELECT token_hash FROM console_invites`).Scan(&stored); err != nil || stored == tok || stored != hashToken(tok) {
		t.Fatalf("stored %q (%v) for token %q", stored, err, tok)
	}
	if err := ir.rep.DB().QueryRow(`SELECT text_body FROM outbox WHERE kind = 'invite'`).Scan(&body); err != nil || strings.Contains(body, tok) {
		t.Fatalf("the outbox keeps the link after delivery: %q %v", body, err)
	}

	c := ir.client()
	// No password yet: nothing signs in.
	if p := ir.post(c, "/signin", url.Values{"email": {"new.dsl@school.example"}, "password": {""}}); p.status != 401 {
		t.Fatalf("sign-in before the link was used: %d", p.status)
	}
	p := ir.get(c, ir.path(link))
	if p.status != 200 || !strings.Contains(p.body, "Choose your password") || !strings.Contains(p.body, "new.dsl@school.example") {
		t.Fatalf("link page: %d\n%s", p.status, p.body)
	}
	form := url.Values{"t": {tok}, "new": {"Summer2026!!!"}, "again": {"Summer2026!!!"}}
	if p = ir.post(c, "/invite", form); p.status != 400 || !strings.Contains(p.body, `That password was refused: it is a common word or pattern (&#34;summer&#34;)`) {
		t.Fatalf("weak password: %d\n%s", p.status, p.body)
	}
	form = url.Values{"t": {tok}, "new": {"new.dsl rules the school"}, "again": {"new.dsl rules the school"}}
	if p = ir.post(c, "/invite", form); p.status != 400 || !strings.Contains(p.body, "contains the account name") {
		t.Fatalf("password with the name: %d\n%s", p.status, p.body)
	}
	form = url.Values{"t": {tok}, "new": {"lantern otter meadow brick"}, "again": {"lantern otter meadow bricks"}}
	if p = ir.post(c, "/invite", form); p.status != 400 || !strings.Contains(p.body, "The two passwords differ") {
		t.Fatalf("different passwords: %d\n%s", p.status, p.body)
	}
	form = url.Values{"t": {tok}, "new": {"lantern otter meadow brick"}, "again": {"lantern otter meadow brick"}}
	if p = ir.post(c, "/invite", form); p.status != 200 || !strings.Contains(p.body, "Add the console to your authenticator app") {
		t.Fatalf("good password: %d\n%s", p.status, p.body)
	}
	key := keyOf(t, p.body)
	// The password waits for the app: it does not sign in yet.
	if p := ir.post(ir.client(), "/signin", url.Values{"email": {"new.dsl@school.example"}, "password": {"lantern otter meadow brick"}}); p.status != 401 {
		t.Fatalf("sign-in before the app was enrolled: %d", p.status)
	}
	// Opening the link again shows the same key.
	if p := ir.get(ir.client(), ir.path(link)); keyOf(t, p.body) != key {
		t.Fatalf("the link's second visit shows another key")
	}
	if p = ir.post(c, "/invite/code", url.Values{"t": {tok}, "code": {"00000x"}}); p.status != 401 || !strings.Contains(p.body, "That code is not right") {
		t.Fatalf("wrong code: %d\n%s", p.status, p.body)
	}
	code, _ := TOTPCode(key, ir.clock.Now())
	if p = ir.post(c, "/invite/code", url.Values{"t": {tok}, "code": {code}}); p.status != 200 || !strings.Contains(p.body, "Your password is set") {
		t.Fatalf("right code: %d\n%s", p.status, p.body)
	}
	// Used: the link no longer works, from any browser.
	if p = ir.get(ir.client(), ir.path(link)); p.status != 404 || !strings.Contains(p.body, "This link does not work") {
		t.Fatalf("used link: %d\n%s", p.status, p.body)
	}
	if p = ir.post(ir.client(), "/invite", form); p.status != 404 {
		t.Fatalf("used link posted: %d", p.status)
	}
	ir.clock.Add(30 * time.Second) // the enrolment's code cannot be replayed
	if p = ir.signIn(ir.client(), "new.dsl@school.example", "lantern otter meadow brick", key); p.url != "/" || !strings.Contains(p.body, "Designated Safeguarding Lead") {
		t.Fatalf("sign-in with the new password and app: %s %d\n%s", p.url, p.status, p.body)
	}
	acts := strings.Join(ir.actions(), "\n")
	for _, want := range []string{"invite.sent new.dsl@school.example", "invite.fail new.dsl@school.example", "invite.used new.dsl@school.example", "invite.fail \n", "signin new.dsl@school.example"} {
		if !strings.Contains(acts+"\n", want) {
			t.Errorf("audit log lacks %q:\n%s", want, acts)
		}
	}
	if bad, err := ir.st.VerifyAudit(); bad != 0 || err != nil {
		t.Fatalf("audit chain: %d %v", bad, err)
	}
}

// TestInviteExpiredAndReplaced: a newer link replaces the older one, and a
// link stops working InviteTTL after it was sent.
func TestInviteExpiredAndReplaced(t *testing.T) {
	ir := newInviteRig(t)
	_, first := ir.invite("it@school.example", RoleIT, false)
	ir.clock.Add(time.Hour)
	_, second := ir.invite("it@school.example", "", true) // `accounts passwd --invite`: a fresh link
	if first == second {
		t.Fatal("the same link twice")
	}
	c := ir.client()
	if p := ir.get(c, ir.path(first)); p.status != 404 {
		t.Fatalf("replaced link: %d\n%s", p.status, p.body)
	}
	if p := ir.get(c, ir.path(second)); p.status != 200 {
		t.Fatalf("new link: %d\n%s", p.status, p.body)
	}
	ir.clock.Add(InviteTTL)
	if p := ir.get(c, ir.path(second)); p.status != 410 || !strings.Contains(p.body, "This link has expired") {
		t.Fatalf("expired link: %d\n%s", p.status, p.body)
	}
	form := url.Values{"t": {tokenOf(second)}, "new": {"lantern otter meadow brick"}, "again": {"lantern otter meadow brick"}}
	if p := ir.post(c, "/invite", form); p.status != 404 {
		t.Fatalf("expired link posted: %d\n%s", p.status, p.body)
	}
	if p := ir.post(c, "/signin", url.Values{"email": {"it@school.example"}, "password": {"lantern otter meadow brick"}}); p.status != 401 {
		t.Fatalf("sign-in after an expired link: %d", p.status)
	}
	acts := strings.Join(ir.actions(), "\n")
	if !strings.Contains(acts, "invite.expired it@school.example") {
		t.Errorf("expiry not audited:\n%s", acts)
	}
	log, _ := ir.st.AuditLog()
	var sent []string
	for _, e := range log {
		if e.Action == "invite.sent" {
			sent = append(sent, e.Detail)
		}
	}
	if len(sent) != 2 || !strings.Contains(sent[1], "the earlier link no longer works") {
		t.Errorf("invitations audited as %q", sent)
	}
}

// TestInviteGuessesLockedOut: wrong links count as failed sign-ins of the
// address; at the limit even the right link is refused from there.
func TestInviteGuessesLockedOut(t *testing.T) {
	ir := newInviteRig(t)
	_, link := ir.invite("dsl@school.example", RoleDSL, false)
	c := ir.client()
	for i := range DefaultAddrFailures {
		b := make([]byte, 32)
		rand.Read(b)
		if p := ir.get(c, "/invite?t="+base64.RawURLEncoding.EncodeToString(b)); p.status != 404 {
			t.Fatalf("guess %d: %d", i, p.status)
		}
	}
	if p := ir.get(c, ir.path(link)); p.status != 429 || !strings.Contains(p.body, "too many failed attempts") {
		t.Fatalf("right link after %d guesses: %d\n%s", DefaultAddrFailures, p.status, p.body)
	}
	// The same lockout as sign-in.
	if p := ir.post(c, "/signin", url.Values{"email": {"dsl@school.example"}, "password": {"x"}}); p.status != 429 {
		t.Fatalf("sign-in from the guessing address: %d", p.status)
	}
	ir.clock.Add(DefaultFailureWindow + time.Second)
	if p := ir.get(c, ir.path(link)); p.status != 200 {
		t.Fatalf("right link after the window: %d", p.status)
	}
}

// TestInviteResetByLink: `accounts passwd EMAIL --invite` stops the old
// password and ends the account's sessions at once; the link sets a new
// one, and the authenticator app already enrolled stays.
func TestInviteResetByLink(t *testing.T) {
	ir := newInviteRig(t)
	secret := ir.add("dsl@school.example", RoleDSL, goodPass, true)
	c := ir.client()
	if p := ir.signIn(c, "dsl@school.example", goodPass, secret); p.url != "/" {
		t.Fatalf("sign-in: %s", p.url)
	}
	mail, link := ir.invite("dsl@school.example", "", true)
	if !strings.Contains(mail, "set a new password") || !strings.Contains(mail, "Your old password no longer works") || strings.Contains(mail, "authenticator app on your phone") {
		t.Errorf("reset mail:\n%s", mail)
	}
	if p := ir.get(c, "/"); p.url != "/signin" {
		t.Fatalf("the session outlived the reset: at %s", p.url)
	}
	if p := ir.post(ir.client(), "/signin", url.Values{"email": {"dsl@school.example"}, "password": {goodPass}}); p.status != 401 {
		t.Fatalf("old password after the reset: %d", p.status)
	}
	form := url.Values{"t": {tokenOf(link)}, "new": {"lantern otter meadow brick"}, "again": {"lantern otter meadow brick"}}
	if p := ir.post(c, "/invite", form); p.status != 200 || !strings.Contains(p.body, "Your password is set") {
		t.Fatalf("reset: %d\n%s", p.status, p.body)
	}
	ir.clock.Add(time.Minute)
	if p := ir.signIn(ir.client(), "dsl@school.example", "lantern otter meadow brick", secret); p.url != "/" {
		t.Fatalf("sign-in after the reset: %s %d\n%s", p.url, p.status, p.body)
	}
}

// TestInviteRefusals: no console.url, an existing account, a bad role.
func TestInviteRefusals(t *testing.T) {
	ir := newInviteRig(t)
	ir.add("dsl@school.example", RoleDSL, goodPass, true)
	m := InviteMail{ConsoleURL: "https://filter.school.example/", School: "Test Primary"}
	for _, c := range []struct {
		email, role string
		reset       bool
		m           InviteMail
		want        string
	}{
		{"new@school.example", RoleDSL, false, InviteMail{School: "Test Primary"}, "console.url is not set"},
		{"dsl@school.example", RoleDSL, false, m, "already exists"},
		{"new@school.example", "boss", false, m, "unknown role"},
		{"nobody@school.example", "", true, m, "no such account"},
		{"not an address", RoleDSL, false, m, "not an email address"},
	} {
		if _, err := ir.st.NewInvite("cli:test", "cli", c.email, c.role, c.reset, false, c.m, ir.clock.Now()); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c, err, c.want)
		}
	}
	if accts, _ := ir.st.Accounts(); len(accts) != 1 {
		t.Errorf("%d accounts after refusals", len(accts))
	}
}

// TestInviteWrongCodesLockAccount: wrong authenticator codes on the link's
// page count against the account as at sign-in; at the limit even the
// right code waits for the window to pass.
func TestInviteWrongCodesLockAccount(t *testing.T) {
	ir := newInviteRig(t)
	_, link := ir.invite("dsl@school.example", RoleDSL, false)
	tok := tokenOf(link)
	c := ir.client()
	p := ir.post(c, "/invite", url.Values{"t": {tok}, "new": {"lantern otter meadow brick"}, "again": {"lantern otter meadow brick"}})
	key := keyOf(t, p.body)
	for i := range DefaultAccountFailures {
		if p := ir.post(c, "/invite/code", url.Values{"t": {tok}, "code": {"00000x"}}); p.status != 401 {
			t.Fatalf("wrong code %d: %d", i, p.status)
		}
	}
	code, _ := TOTPCode(key, ir.clock.Now())
	if p := ir.post(c, "/invite/code", url.Values{"t": {tok}, "code": {code}}); p.status != 429 || !strings.Contains(p.body, "Too many wrong codes") {
		t.Fatalf("right code after %d wrong: %d\n%s", DefaultAccountFailures, p.status, p.body)
	}
	ir.clock.Add(DefaultFailureWindow + time.Second)
	code, _ = TOTPCode(key, ir.clock.Now())
	if p := ir.post(c, "/invite/code", url.Values{"t": {tok}, "code": {code}}); p.status != 200 || !strings.Contains(p.body, "Your password is set") {
		t.Fatalf("right code after the window: %d\n%s", p.status, p.body)
	}
}
