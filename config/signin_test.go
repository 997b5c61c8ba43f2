package config

import (
	"strings"
	"testing"
	"time"
)

func TestSigninConfig(t *testing.T) {
	d := Default()
	if s := d.Identity.Signin; s.Listen != "" || s.User != "email" || s.Label != DefaultSigninLabel || d.SigninURL() != "" {
		t.Fatalf("defaults %+v", s)
	}
	if d.SigninTTL() != DefaultSigninTTL || d.Proxy.Auth.LoginTTL.D() != 30*time.Minute {
		t.Fatalf("ttl %s, want a school day; proxy login %s, want 30m", d.SigninTTL(), d.Proxy.Auth.LoginTTL.D())
	}
	checkErrors(t, `identity:
  signin:
    listen: "10.0.0.5:443"
    allow: [0.0.0.0/0]
    issuer: http://login.example
    client_secret: {file: /x, env: Y}
    redirect_url: https://signin.school.example/cb
    domains: ["not a domain"]
    user: mail
    groups:
      - {claim: "", value: "", group: pupils}
    ttl: 10s
`, []want{
		{"2:3", "identity.signin.cert", "give it a certificate"},
		{"2:3", "identity.signin.client_id", "client (application) ID"},
		{"4:13", "identity.signin.allow[0]", "would let anyone reach"},
		{"5:13", "identity.signin.issuer", "https issuer URL"},
		{"6:5", "identity.signin.client_secret", `either "file:" or "env:"`},
		{"7:19", "identity.signin.redirect_url", "the path must be /callback"},
		{"8:15", "identity.signin.domains[0]", "is not an email domain"},
		{"9:11", "identity.signin.user", `unknown user name form "mail"`},
		{"11:17", "identity.signin.groups[0].claim", "claim's name"},
		{"11:28", "identity.signin.groups[0].value", "must not be empty"},
		{"11:39", "identity.signin.groups[0].group", `no group named "pupils"`},
		{"12:10", "identity.signin.ttl", "must be between 1m and 7d"},
	})
	// http redirect with a certificate; cert without key; a clash with
	// the proxy's listener.
	checkErrors(t, `proxy: {listen: "10.0.0.5:3128"}
identity:
  signin:
    listen: "10.0.0.5:3128"
    cert: /etc/gatehouse/signin.crt
    issuer: https://accounts.google.com
    client_id: abc
    client_secret: {env: SIGNIN_SECRET}
    redirect_url: http://signin.school.example/callback
    domains: [school.example]
`, []want{
		{"4:13", "identity.signin.listen", "is also used by proxy.listen"},
		{"5:11", "identity.signin.cert", "cert and key go together"},
		{"9:19", "identity.signin.redirect_url", "must be https"},
	})
	// Plain HTTP off loopback only when asked for, with a warning.
	c, err := Parse([]byte(`identity:
  signin:
    listen: "10.0.0.5:8088"
    plain_http: true
    issuer: https://accounts.google.com
    client_id: abc
    client_secret: {env: SIGNIN_SECRET}
    redirect_url: http://10.0.0.5:8088/callback
    domains: [School.Example]
    ttl: 2h
`), testFile)
	if err != nil {
		t.Fatal(err)
	}
	if c.SigninURL() != "http://10.0.0.5:8088/" || c.SigninTTL() != 2*time.Hour || c.Identity.Signin.Domains[0] != "school.example" {
		t.Fatalf("url %q ttl %s domains %v", c.SigninURL(), c.SigninTTL(), c.Identity.Signin.Domains)
	}
	if w := strings.Join(c.Warnings(), "\n"); !strings.Contains(w, "PLAIN HTTP sign-in page") {
		t.Fatalf("no warning for plain HTTP: %s", w)
	}
	// On loopback, plain HTTP is allowed without asking.
	if _, err := Parse([]byte(`identity:
  signin:
    listen: "127.0.0.1:8088"
    issuer: https://accounts.google.com
    client_id: abc
    client_secret: {env: SIGNIN_SECRET}
    redirect_url: http://127.0.0.1:8088/callback
    domains: [school.example]
`), testFile); err != nil {
		t.Fatal(err)
	}
	// local_part with two domains would make two people one user.
	checkErrors(t, `identity:
  signin:
    listen: "127.0.0.1:8443"
    plain_http: true
    issuer: https://accounts.google.com
    client_id: abc
    client_secret: {env: SIGNIN_SECRET}
    redirect_url: http://127.0.0.1:8443/callback
    domains: [school.example, students.school.example]
    user: local_part
`, []want{
		{"10:11", "identity.signin.user", "with 2 domains use email"},
	})
}

// TestSigninSecretNotDumped: the change log shows where the client secret
// is, never its value.
func TestSigninSecretNotDumped(t *testing.T) {
	t.Setenv("GH_SIGNIN_SECRET", "hunter2-signin")
	c, err := Parse([]byte(`identity:
  signin:
    listen: "127.0.0.1:8088"
    issuer: https://accounts.google.com
    client_id: abc
    client_secret: {env: GH_SIGNIN_SECRET}
    redirect_url: http://127.0.0.1:8088/callback
    domains: [school.example]
`), testFile)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := c.Identity.Signin.ClientSecret.Read(); err != nil || v != "hunter2-signin" {
		t.Fatalf("secret %q %v", v, err)
	}
	for _, ch := range Diff(Default(), c) {
		if strings.Contains(ch.Text, "hunter2") {
			t.Fatalf("change shows the secret: %s", ch.Text)
		}
	}
}

// TestSigninEntraTenant: a Microsoft Entra ID issuer must name the
// school's tenant ID (the page checks the ID token's tid against it);
// "common", "organizations" or a domain name are errors naming the line.
func TestSigninEntraTenant(t *testing.T) {
	for _, tenant := range []string{"common", "organizations", "school.onmicrosoft.com"} {
		checkErrors(t, `identity:
  signin:
    listen: "127.0.0.1:8443"
    plain_http: true
    issuer: https://login.microsoftonline.com/`+tenant+`/v2.0
    client_id: abc
    client_secret: {env: SIGNIN_SECRET}
    redirect_url: http://127.0.0.1:8443/callback
    domains: [school.example]
`, []want{{"5:13", "identity.signin.issuer", "tenant ID"}})
	}
	if tn, ok := EntraIssuer("https://login.microsoftonline.com/0B1C2D3E-0000-4000-8000-000000000001/v2.0"); !ok || tn != "0b1c2d3e-0000-4000-8000-000000000001" {
		t.Errorf("EntraIssuer: %q %v", tn, ok)
	}
	if _, ok := EntraIssuer("https://accounts.google.com"); ok {
		t.Error("Google's issuer taken for Entra ID's")
	}
}
