package console

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-filter/gatehouse/internal/browsertest"
)

// TestBrowserInviteLink: a new DSL opens the mailed one-time link from
// webmail, is refused a weak password with the reason, chooses a good
// one, adds the console to an authenticator app and signs in; the used
// link and an expired one are refused. Every page passes axe-core and fits
// a phone; the link's pages are saved at phone and laptop widths.
func TestBrowserInviteLink(t *testing.T) {
	src, skip, err := browsertest.AxeSource()
	if err != nil {
		t.Fatal(err)
	}
	if skip != "" {
		t.Log(skip) // the flow is still tested, without axe
	}
	br := newBrowserRig(t, nil)
	shots := shotsDir(t)
	invite := func(email, role string) string {
		t.Helper()
		before := len(br.sink.messages())
		if _, err := br.st.NewInvite("cli:test", "cli", email, role, false, false, InviteMail{ConsoleURL: br.http.URL + "/", School: "Test Primary",
			By: "Sam Jones (IT)"}, br.clock.Now()); err != nil {
			t.Fatal(err)
		}
		if _, err := br.mailer.DeliverDue(context.Background()); err != nil {
			t.Fatal(err)
		}
		msgs := br.sink.messages()
		if len(msgs) != before+1 {
			t.Fatalf("%d mails, want %d", len(msgs), before+1)
		}
		link := inviteLinkRE.FindString(readable(t, msgs[len(msgs)-1]))
		if link == "" {
			t.Fatalf("no link in the mail:\n%s", msgs[len(msgs)-1])
		}
		return link
	}
	link := invite("new.dsl@school.example", RoleDSL)

	tb := br.b.newTab()
	tb.open(webmail(t, link))
	if st := tb.click("#open"); st != http.StatusOK {
		t.Fatalf("the link answered %d", st)
	}
	tb.wantAt("/invite", "Choose your password", "new.dsl@school.example", "Designated Safeguarding Lead")
	tb.checkPage(src, shots, "invite", true)

	tb.fill("#new", "Summer2026!!!")
	tb.fill("#again", "Summer2026!!!")
	if st := tb.click(`form[action="/invite"] button[type=submit]`); st != http.StatusBadRequest {
		t.Errorf("weak password: status %d, want 400", st)
	}
	tb.wantAt("/invite", `That password was refused: it is a common word or pattern ("summer") with digits or symbols added; attackers try those first.`)
	tb.checkPage(src, shots, "invite-weak", false)

	const pass = "lantern otter meadow brick"
	tb.fill("#new", pass)
	tb.fill("#again", pass)
	tb.click(`form[action="/invite"] button[type=submit]`)
	tb.wantAt("/invite", "Add the console to your authenticator app", "Type this key")
	tb.checkPage(src, shots, "invite-app", true)
	key := strings.ReplaceAll(evalIn[string](tb, `document.getElementById("key").textContent`), " ", "")
	if href := evalIn[string](tb, `document.querySelector('a[href^="otpauth:"]').getAttribute("href")`); !strings.Contains(href, "secret="+key) {
		t.Errorf("the app link %q does not carry the key %s", href, key)
	}
	tb.fill("#code", wrongCode(t, key, br.clock.Now()))
	if st := tb.click(`form[action="/invite/code"] button[type=submit]`); st != http.StatusUnauthorized {
		t.Errorf("wrong code: status %d, want 401", st)
	}
	tb.wantAt("/invite/code", "That code is not right")
	code, err := TOTPCode(key, br.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	tb.fill("#code", code)
	tb.click(`form[action="/invite/code"] button[type=submit]`)
	tb.wantAt("/invite/code", "Your password is set")
	tb.checkPage(src, shots, "invite-done", false)

	// Signing in, with the app's next code.
	br.clock.Add(30 * time.Second)
	if v := evalIn[string](tb, `document.getElementById("email").value`); v != "new.dsl@school.example" {
		t.Errorf("the sign-in form has %q for the email", v)
	}
	tb.fill("#password", pass)
	tb.click(`form[action="/signin"] button[type=submit]`)
	tb.wantAt("/signin/code")
	code, _ = TOTPCode(key, br.clock.Now())
	tb.fill("#code", code)
	tb.click(`form[action="/signin/code"] button[type=submit]`)
	tb.wantAt("/", "new.dsl@school.example (Designated Safeguarding Lead)")

	// The used link is refused, in another browser too.
	other := br.b.newTab()
	if st := other.open(link); st != http.StatusNotFound {
		t.Errorf("used link: status %d, want 404", st)
	}
	other.wantAt("/invite", "This link does not work")
	other.checkPage(src, shots, "invite-used", false)

	// An expired link is refused, saying to ask IT for a new one.
	late := invite("it@school.example", RoleIT)
	br.clock.Add(InviteTTL + time.Minute)
	if st := other.open(late); st != http.StatusGone {
		t.Errorf("expired link: status %d, want 410", st)
	}
	other.wantAt("/invite", "This link has expired", "Ask IT to send you a new one")
	other.checkPage(src, shots, "invite-expired", false)

	acts := strings.Join(br.actions(), "\n")
	for _, want := range []string{"invite.sent new.dsl@school.example", "invite.fail new.dsl@school.example", "invite.used new.dsl@school.example",
		"signin new.dsl@school.example", "invite.fail ", "invite.expired it@school.example"} {
		if !strings.Contains(acts, want) {
			t.Errorf("audit log lacks %q:\n%s", want, acts)
		}
	}
}

// wrongCode is a 6-digit code the app does not show around now.
func wrongCode(t *testing.T, key string, now time.Time) string {
	t.Helper()
	for _, c := range []string{"123456", "654321", "111111", "222222"} {
		if totpMatch(key, c, now) < 0 {
			return c
		}
	}
	t.Fatal("no wrong code found")
	return ""
}
