package console

import (
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-filter/gatehouse/internal/oidctest"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// provider is the OpenID provider of the tests (internal/oidctest) for
// the console's client: discovery, JWKS, an authorisation endpoint that
// signs in the email set at once, and a token endpoint that checks the
// client secret and PKCE and returns an RS256-signed ID token, over HTTPS
// that only its own client trusts.
type provider struct{ *oidctest.Provider }

const (
	testClientID     = "gatehouse-console"
	testClientSecret = "s3cret-from-file"
)

func newProvider(t *testing.T, now func() time.Time) *provider {
	t.Helper()
	p := oidctest.New(t, testClientID, testClientSecret)
	p.Now = now
	return &provider{p}
}

// set is who the provider signs in next, with the nonce and audience it
// puts in the ID token instead of the right ones ("": the right ones).
func (p *provider) set(email, nonce, aud string) {
	p.Set(oidctest.Claims{Email: email, Nonce: nonce, Audience: aud})
}

// oidcRig is a console whose OIDC provider is p.
func oidcRig(t *testing.T, trustMFA bool) (*rig, *provider, *OIDC) {
	t.Helper()
	var p *provider
	conf := &OIDC{ClientID: testClientID, ClientSecret: testClientSecret, RedirectURL: "https://placeholder/", Domains: []string{"school.example"},
		TrustIdPMFA: trustMFA, Label: "Microsoft"}
	r := newRigWith(t, false, func(o *Options, dir string, rep *reports.Store) {
		p = newProvider(t, o.Now)
		conf.Issuer, conf.Client = p.URL, p.Client()
		o.OIDC = conf
	})
	conf.RedirectURL = r.http.URL + "/signin/oidc/callback" // known once the console listens; before any request
	return r, p, conf
}

// oidcSignIn presses "Sign in with Microsoft" and follows the redirects.
func (r *rig) oidcSignIn(c *http.Client) page {
	r.t.Helper()
	if p := r.get(c, "/signin"); !strings.Contains(p.body, "Sign in with Microsoft") {
		r.t.Fatalf("no OIDC button:\n%s", p.body)
	}
	p := r.post(c, "/signin/oidc", url.Values{})
	// The callback answers with a page that moves on by itself (a meta
	// refresh, as a browser follows it): follow it.
	if m := refreshRE.FindStringSubmatch(p.body); m != nil && p.url == "/signin/oidc/callback" {
		if !strings.Contains(p.body, `<a href="`+m[1]+`">Continue</a>`) {
			r.t.Errorf("continue page without its link:\n%s", p.body)
		}
		return r.get(c, m[1])
	}
	return p
}

var refreshRE = regexp.MustCompile(`<meta http-equiv="refresh" content="0; url=([^"]+)">`)

func TestOIDCSignIn(t *testing.T) {
	r, p, _ := oidcRig(t, false)
	secret := r.add("it@school.example", RoleIT, goodPass, true)

	// An account with a second factor: the provider's sign-in, then the code.
	p.set("IT@School.Example", "", "")
	b := p.browser()
	pg := r.oidcSignIn(b)
	if pg.url != "/signin/code" {
		t.Fatalf("after the provider: %s %d\n%s", pg.url, pg.status, pg.body)
	}
	code, _ := TOTPCode(secret, r.clock.Now())
	if pg := r.post(b, "/signin/code", url.Values{"code": {code}, "csrf": {csrf(t, pg.body)}}); pg.url != "/" || pg.status != 200 {
		t.Fatalf("after the code: %s %d", pg.url, pg.status)
	}
	log, _ := r.st.AuditLog()
	if last := log[len(log)-1]; last.Action != "signin" || last.Actor != "it@school.example" || !strings.Contains(last.Detail, "oidc "+p.URL) {
		t.Errorf("sign-in audited as %+v", last)
	}

	// No account: refused, none made.
	p.set("newteacher@school.example", "", "")
	pg = r.oidcSignIn(p.browser())
	if pg.status != 403 || !strings.Contains(pg.body, "has no console account") {
		t.Errorf("no account: %d\n%s", pg.status, pg.body)
	}
	if _, err := r.st.Account("newteacher@school.example"); err == nil {
		t.Error("an account was created")
	}
	// Another domain: refused.
	p.set("it@elsewhere.example", "", "")
	if pg := r.oidcSignIn(p.browser()); pg.status != 403 || !strings.Contains(pg.body, "not in a domain allowed") {
		t.Errorf("other domain: %d\n%s", pg.status, pg.body)
	}
	// A token for someone else's client, or a replayed nonce: refused.
	p.set("it@school.example", "", "another-client")
	if pg := r.oidcSignIn(p.browser()); pg.status != 401 || pg.url == "/" {
		t.Errorf("wrong audience: %s %d", pg.url, pg.status)
	}
	p.set("it@school.example", "an-old-nonce", "")
	if pg := r.oidcSignIn(p.browser()); pg.status != 401 || pg.url == "/" {
		t.Errorf("wrong nonce: %s %d", pg.url, pg.status)
	}

	// The callback in another browser (login CSRF), or used twice: refused.
	p.set("it@school.example", "", "")
	a := p.browser()
	a.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Path == "/signin/oidc/callback" {
			return http.ErrUseLastResponse
		}
		return nil
	}
	resp, err := a.PostForm(r.http.URL+"/signin/oidc", url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	callback := resp.Header.Get("Location")
	if !strings.HasPrefix(callback, r.http.URL+"/signin/oidc/callback?") {
		t.Fatalf("provider sent the browser to %q", callback)
	}
	other := p.browser()
	if pg := r.get(other, strings.TrimPrefix(callback, r.http.URL)); pg.status != 400 || !strings.Contains(pg.body, "did not finish") {
		t.Errorf("callback in another browser: %d\n%s", pg.status, pg.body)
	}
	a.CheckRedirect = nil
	if pg := r.get(a, strings.TrimPrefix(callback, r.http.URL)); pg.status != 400 || pg.url == "/" {
		t.Errorf("callback used twice: %s %d", pg.url, pg.status)
	}
	fails := 0
	log, _ = r.st.AuditLog()
	for _, e := range log {
		if e.Action == "signin.fail" && strings.HasPrefix(e.Detail, "oidc: ") {
			fails++
		}
	}
	if fails != 6 {
		t.Errorf("%d OIDC failures audited, want 6: %v", fails, r.actions())
	}
}

// With console.oidc.trust_idp_mfa the provider's sign-in is enough.
func TestOIDCTrustsProviderMFA(t *testing.T) {
	r, p, _ := oidcRig(t, true)
	r.add("dsl@school.example", RoleDSL, goodPass, true)
	p.set("dsl@school.example", "", "")
	if pg := r.oidcSignIn(p.browser()); pg.url != "/" || pg.status != 200 {
		t.Fatalf("trusted MFA: %s %d\n%s", pg.url, pg.status, pg.body)
	}
	log, _ := r.st.AuditLog()
	if last := log[len(log)-2]; last.Action != "signin" || !strings.Contains(last.Detail, "provider's MFA trusted") {
		t.Errorf("audit: %v", r.actions())
	}
}

// browser follows redirects across the console and the provider, trusting
// the provider's certificate.
func (p *provider) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Transport: p.Client().Transport, Jar: jar}
}
