package signin

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/gatehouse-filter/gatehouse/internal/browsertest"
	"github.com/gatehouse-filter/gatehouse/internal/oidctest"
)

// TestBrowserSignIn signs in, out and in with the wrong account in
// Debian's chromium: the page's form leads to the provider and back
// (its Content-Security-Policy lets the form's redirect go to the
// provider), and every page the pupil sees passes axe-core (WCAG 2.2 AA)
// at phone and laptop widths, with screenshots ($GATEHOUSE_SCREENSHOTS).
func TestBrowserSignIn(t *testing.T) {
	browsertest.Chromium(t)
	axe := browsertest.Axe(t)
	r := newRig(t, nil)
	// The test provider's certificate is httptest's; the page itself
	// checks it (Options.Client), the browser is told not to.
	tab := browsertest.New(t, chromedp.Flag("ignore-certificate-errors", true))
	dir := browsertest.ShotsDir(t)

	if st := tab.Open(r.url + "/"); st != 200 || !strings.Contains(tab.Text(), "Sign in with Microsoft") {
		t.Fatalf("the page: %d\n%s", st, tab.Text())
	}
	tab.CheckPage(axe, dir, "signin-start")

	r.p.Set(oidctest.Claims{Email: "amira.khan@students.school.example", Name: "Amira Khan"})
	if st := tab.Click(`form[action="/start"] button`); st != 200 || !strings.HasPrefix(tab.Path(), "/callback") ||
		!strings.Contains(tab.Text(), "You are signed in") {
		t.Fatalf("after signing in: %d at %s\n%s", st, tab.Path(), tab.Text())
	}
	if e := r.who("127.0.0.1"); e == nil || e.User != "amira.khan@students.school.example" {
		t.Fatalf("table after the browser's sign-in: %+v", e)
	}
	tab.CheckPage(axe, dir, "signin-done")

	if st := tab.Click(`form[action="/signout"] button`); st != 200 || !strings.Contains(tab.Text(), "You are signed out") {
		t.Fatalf("after signing out: %d\n%s", st, tab.Text())
	}
	if e := r.who("127.0.0.1"); e != nil {
		t.Fatalf("table after sign-out: %+v", e)
	}
	tab.CheckPage(axe, dir, "signin-out")

	r.p.Set(oidctest.Claims{Email: "amira@gmail.com"})
	tab.Open(r.url + "/")
	if st := tab.Click(`form[action="/start"] button`); st != 403 || !strings.Contains(tab.Text(), "not a school account") {
		t.Fatalf("wrong domain: %d\n%s", st, tab.Text())
	}
	tab.CheckPage(axe, dir, "signin-refused")
}
