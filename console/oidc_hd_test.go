package console

import (
	"strings"
	"testing"

	"github.com/gatehouse-filter/gatehouse/internal/oidctest"
)

// TestOIDCGoogleHostedDomain: with Google's issuer the console accepts
// only the school's Workspace accounts. A consumer Google account made
// with a staff address (the address verified once, by someone who had
// the mailbox; kept after they left, outside the school's Workspace, its
// MFA policy and its suspension) has the same email, verified, but no
// "hd": before, it signed in to that staff member's console account
// (with trust_idp_mfa, with no code at all).
func TestOIDCGoogleHostedDomain(t *testing.T) {
	r, p, conf := oidcRig(t, true)
	conf.HostedDomain = true // what serve sets for https://accounts.google.com
	r.add("it@school.example", RoleIT, goodPass, true)
	p.Set(oidctest.Claims{Email: "it@school.example"})
	if pg := r.oidcSignIn(p.browser()); pg.status != 403 || pg.url == "/" {
		t.Fatalf("consumer account with the school address: %d at %s\n%s", pg.status, pg.url, pg.body)
	}
	if e := r.lastAudit(); e.Action != "signin.fail" || !strings.Contains(e.Detail, "hd") {
		t.Fatalf("refusal not audited: %+v", e)
	}
	p.Set(oidctest.Claims{Email: "it@school.example", Extra: map[string]any{"hd": "other.example"}})
	if pg := r.oidcSignIn(p.browser()); pg.status != 403 {
		t.Fatalf("another Workspace's account: %d", pg.status)
	}
	p.Set(oidctest.Claims{Email: "it@school.example", Extra: map[string]any{"hd": "school.example"}})
	if pg := r.oidcSignIn(p.browser()); pg.status != 200 || pg.url != "/" {
		t.Fatalf("the school's Workspace account: %d at %s\n%s", pg.status, pg.url, pg.body)
	}
}

// TestOIDCEmailVerified: the console, like the pupils' sign-in page, takes
// an email only when the provider vouches for it. A token without
// email_verified (a provider that lets anyone type an address, or a
// misconfigured one) signed in to the account with that address.
func TestOIDCEmailVerified(t *testing.T) {
	r, p, _ := oidcRig(t, true)
	r.add("it@school.example", RoleIT, goodPass, true)
	no := false
	for name, c := range map[string]oidctest.Claims{
		"without email_verified": {Email: "it@school.example", Extra: map[string]any{"email_verified": nil}},
		"email_verified false":   {Email: "it@school.example", EmailVerified: &no},
	} {
		p.Set(c)
		if pg := r.oidcSignIn(p.browser()); pg.status != 403 || pg.url == "/" {
			t.Fatalf("%s: %d at %s\n%s", name, pg.status, pg.url, pg.body)
		}
		if e := r.lastAudit(); e.Action != "signin.fail" || !strings.Contains(e.Detail, "not verified") {
			t.Fatalf("%s: refusal not audited: %+v", name, e)
		}
	}
	p.Set(oidctest.Claims{Email: "it@school.example"}) // email_verified true
	if pg := r.oidcSignIn(p.browser()); pg.status != 200 || pg.url != "/" {
		t.Fatalf("verified: %d at %s\n%s", pg.status, pg.url, pg.body)
	}
}
