package console

import (
	"net/http"
	"strings"
	"testing"
)

// TestCrossSiteArrivalContinuesSameSite: a navigation from another site
// to the sign-in page gets the page that reloads it from the console's own
// site (so the Strict cookie is sent); any other request gets the form.
func TestCrossSiteArrivalContinuesSameSite(t *testing.T) {
	r := newRig(t, false)
	get := func(site, mode string) page {
		t.Helper()
		req, _ := http.NewRequest("GET", r.http.URL+"/signin?next=%2Fincidents%2F7", nil)
		if site != "" {
			req.Header.Set("Sec-Fetch-Site", site)
			req.Header.Set("Sec-Fetch-Mode", mode)
		}
		return r.do(r.client(), req)
	}
	p := get("cross-site", "navigate")
	if p.status != 200 || !strings.Contains(p.body, `<meta http-equiv="refresh" content="0; url=/signin?next=%2Fincidents%2F7">`) ||
		strings.Contains(p.body, `name="password"`) {
		t.Fatalf("cross-site arrival: %d\n%s", p.status, p.body)
	}
	for _, c := range [][2]string{{"same-origin", "navigate"}, {"none", "navigate"}, {"cross-site", "cors"}, {"", ""}} {
		if p := get(c[0], c[1]); p.status != 200 || !strings.Contains(p.body, `name="password"`) || strings.Contains(p.body, "refresh") {
			t.Errorf("%v: %d\n%s", c, p.status, p.body)
		}
	}
}

// TestSignInPolicyAllowsProvider: with provider sign-in the sign-in page's
// form-action names the provider's origin; other pages keep 'self'.
func TestSignInPolicyAllowsProvider(t *testing.T) {
	r, p, _ := oidcRig(t, false)
	c := r.client()
	pg := r.get(c, "/signin")
	if got := pg.header.Get("Content-Security-Policy"); !strings.Contains(got, "form-action 'self' "+p.URL+";") {
		t.Errorf("sign-in page's policy: %s", got)
	}
	if got := r.get(c, "/static/console.css").header.Get("Content-Security-Policy"); got != cspPolicy {
		t.Errorf("other answers' policy: %s", got)
	}
	plain := newRig(t, false)
	if got := plain.get(plain.client(), "/signin").header.Get("Content-Security-Policy"); got != cspPolicy {
		t.Errorf("without OIDC: %s", got)
	}
}
