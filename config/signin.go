package config

import (
	"crypto/tls"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/gatehouse-filter/gatehouse/blocklists"
)

// IdentitySignin is the sign-in page for devices without proxy settings
// (Chromebooks, pupils' own devices on the school Wi-Fi; package
// identity/signin): a pupil signs in with the school's Google Workspace
// or Microsoft Entra ID account (OpenID Connect) and the address the page
// saw the browser come from is theirs for TTL.
type IdentitySignin struct {
	// Listen is the page's own listener (host:port); empty: off.
	Listen string `yaml:"listen"`
	// Allow lists who may reach the page; empty: clients.allow.
	Allow []netip.Prefix `yaml:"allow"`
	// Cert and Key (PEM) serve the page over HTTPS: a certificate the
	// pupils' own devices trust (a public CA's, for the page's name).
	// Without them the page is plain HTTP, allowed only on a loopback
	// address or with PlainHTTP.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// PlainHTTP serves the page without TLS off loopback: a lab only
	// (config check warns loudly).
	PlainHTTP bool `yaml:"plain_http"`
	// Issuer, ClientID, ClientSecret (file: or env:) and RedirectURL are
	// the page's app at the provider; the redirect URL is the page's own
	// address with the path /callback.
	Issuer       string  `yaml:"issuer"`
	ClientID     string  `yaml:"client_id"`
	ClientSecret *Secret `yaml:"client_secret"`
	RedirectURL  string  `yaml:"redirect_url"`
	// CAFile is PEM CAs trusted for the provider besides the system roots
	// (an on-premises provider such as AD FS with the school's own CA).
	CAFile string `yaml:"ca_file"`
	// Domains are the email domains that may sign in (lower case).
	Domains []string `yaml:"domains"`
	// User is how the ID token's email becomes the Gatehouse user name:
	// "email" (the whole address, lower case) or "local_part" (before
	// the @, to match user names in the people file or clients.users).
	User string `yaml:"user"`
	// Groups map an ID token claim's value (a string, or one of a list
	// such as Entra ID's "groups") to a Gatehouse group, first match
	// wins; without a match identity.groups and the directory decide.
	Groups []SigninGroup `yaml:"groups"`
	// TTL is how long a sign-in names the address; 0: DefaultSigninTTL
	// (a sign-in is made once, on a device of the person's own).
	TTL Duration `yaml:"ttl"`
	// Label is the button's provider name: "Sign in with LABEL".
	Label string `yaml:"label"`
}

// SigninGroup maps an ID token claim's value to a Gatehouse group.
type SigninGroup struct {
	Claim string `yaml:"claim"` // e.g. groups (Entra ID), hd (Google's hosted domain)
	Value string `yaml:"value"` // e.g. the Entra group's object ID, students.school.example
	Group string `yaml:"group"`
}

// SigninCallbackPath is where the provider sends the browser back to the
// sign-in page.
const SigninCallbackPath = "/callback"

// Sign-in page defaults.
const (
	DefaultSigninUser  = "email"
	DefaultSigninLabel = "your school account"
	// DefaultSigninTTL is how long a sign-in names its address unless
	// identity.signin.ttl says: a school day.
	DefaultSigninTTL = 8 * time.Hour
)

// SigninURL is the sign-in page's address as pupils reach it (the
// redirect URL's origin), or "" when the page is off.
func (c *Config) SigninURL() string {
	s := &c.Identity.Signin
	if s.Listen == "" {
		return ""
	}
	u, err := url.Parse(s.RedirectURL)
	if err != nil || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host + "/"
}

// SigninTTL is how long a sign-in names its address.
func (c *Config) SigninTTL() time.Duration {
	if d := c.Identity.Signin.TTL.D(); d > 0 {
		return d
	}
	return DefaultSigninTTL
}

// SigninAllow is who may reach the sign-in page.
func (c *Config) SigninAllow() []netip.Prefix {
	if len(c.Identity.Signin.Allow) > 0 {
		return c.Identity.Signin.Allow
	}
	return c.Clients.Allow
}

var claimRE = regexp.MustCompile(`^[A-Za-z0-9_.:/-]{1,64}$`)

// entraHosts are Microsoft Entra ID's issuers' hosts (the public cloud,
// US Government, China; sts.windows.net for v1.0 tokens).
var entraHosts = map[string]bool{"login.microsoftonline.com": true, "login.microsoftonline.us": true,
	"login.partner.microsoftonline.cn": true, "sts.windows.net": true}

var tenantIDRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// EntraIssuer reports whether issuer is Microsoft Entra ID's, and its
// tenant (the path's first segment, lower case: a tenant ID when the
// issuer is valid; "" when there is none).
func EntraIssuer(issuer string) (tenant string, ok bool) {
	u, err := url.Parse(strings.TrimSpace(issuer))
	if err != nil || !entraHosts[strings.ToLower(u.Host)] {
		return "", false
	}
	t, _, _ := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	return strings.ToLower(t), true
}

// entraTenant checks that a Microsoft Entra ID issuer names the school's
// tenant ID: "common" or "organizations" would take any tenant's accounts
// (go-oidc refuses their issuer anyway), and a domain name is not what
// the tokens' iss and tid say (the sign-in page and the console vouch
// for an Entra account's email by its tenant).
func (v *validator) entraTenant(at, issuer string) {
	if t, ok := EntraIssuer(issuer); ok && !tenantIDRE.MatchString(t) {
		v.errf(at+".issuer", "Microsoft Entra ID's issuer names the school's tenant ID: https://login.microsoftonline.com/TENANT-ID/v2.0 (the Directory (tenant) ID, a GUID), not %q", t)
	}
}

func (v *validator) signinSection() {
	const at = "identity.signin"
	s := &v.c.Identity.Signin
	if strings.TrimSpace(s.Listen) == "" {
		if s.Issuer != "" || s.ClientID != "" || s.ClientSecret != nil || s.RedirectURL != "" || len(s.Domains) > 0 {
			v.warnf(at, "settings without listen: the sign-in page is off")
		}
		return
	}
	// listeners() checks the address itself and its clashes.
	loopback := ConsoleLoopback(s.Listen)
	switch {
	case (s.Cert == "") != (s.Key == ""):
		k := "cert"
		if s.Cert == "" {
			k = "key"
		}
		v.errf(at+"."+k, "cert and key go together: set both, or neither (plain HTTP only on a loopback address or with plain_http)")
	case s.Cert != "" && s.PlainHTTP:
		v.errf(at+".plain_http", "cert and key are set: the page is HTTPS; remove plain_http")
	case s.Cert == "" && !loopback && !s.PlainHTTP:
		v.errf(at+".cert", "the page takes a sign-in: give it a certificate pupils' devices trust (cert and key), or plain_http: true in a lab")
	case s.Cert == "" && !loopback:
		v.warnf(at+".plain_http", "PLAIN HTTP sign-in page: the sign-in can be watched and tampered with on the network, and providers refuse http redirect URLs off localhost; a lab only")
	}
	v.oidcClient(at, s.Issuer, s.ClientID, s.ClientSecret, "the sign-in page's", "signin-secret")
	v.entraTenant(at, s.Issuer)
	u, err := url.Parse(strings.TrimSpace(s.RedirectURL))
	switch {
	case s.RedirectURL == "" || err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "":
		v.errf(at+".redirect_url", "want the page's callback URL as pupils reach it, https://SIGNIN-HOST%s", SigninCallbackPath)
	case u.Path != SigninCallbackPath:
		v.errf(at+".redirect_url", "the path must be %s", SigninCallbackPath)
	case u.Scheme == "https":
	case u.Scheme == "http" && (s.Cert == "" && (loopback || s.PlainHTTP)):
	default:
		v.errf(at+".redirect_url", "must be https with cert and key (http only when the page itself is plain HTTP)")
	}
	if len(s.Domains) == 0 {
		v.errf(at+".domains", "list the email domains that may sign in (e.g. [school.example, students.school.example])")
	}
	for i, d := range s.Domains {
		s.Domains[i] = strings.ToLower(strings.TrimSpace(d))
		if h, err := blocklists.NormalizeHost(s.Domains[i]); err != nil || h != s.Domains[i] || !strings.Contains(h, ".") {
			v.errf(joinIndex(at+".domains", i), "%q is not an email domain", d)
		}
	}
	switch s.User {
	case "email":
	case "local_part":
		// j.smith@school.example and j.smith@students.school.example
		// would be one user: one's name, group and history the other's.
		if len(s.Domains) > 1 {
			v.errf(at+".user", "local_part names two people with the same name in different domains as one user; with %d domains use email", len(s.Domains))
		}
	default:
		v.errf(at+".user", "unknown user name form %q (want email or local_part)%s", s.User, didYouMean(s.User, []string{"email", "local_part"}))
	}
	for i, g := range s.Groups {
		gat := joinIndex(at+".groups", i)
		if !claimRE.MatchString(g.Claim) {
			v.errf(joinKey(gat, "claim"), "want an ID token claim's name (e.g. groups or hd)")
		}
		if strings.TrimSpace(g.Value) == "" {
			v.errf(joinKey(gat, "value"), "must not be empty")
		}
		if _, ok := v.c.Groups[g.Group]; !ok {
			v.errf(joinKey(gat, "group"), "no group named %q", g.Group)
		}
	}
	if s.TTL != 0 {
		v.between(at+".ttl", s.TTL, time.Minute, 7*24*time.Hour)
	}
	for i, n := range s.Allow {
		p := joinIndex(at+".allow", i)
		if !n.IsValid() {
			v.errf(p, "empty network")
		} else if n.Bits() == 0 {
			v.errf(p, "%s would let anyone reach the sign-in page; list the school's networks", n)
		}
	}
	if len(s.Label) > 40 {
		v.errf(at+".label", "at most 40 characters")
	}
}

// signinFiles checks, for config check, that the certificate can be read.
func (v *validator) signinFiles() {
	s := &v.c.Identity.Signin
	if s.Listen == "" {
		return
	}
	if s.CAFile != "" && v.readable("identity.signin.ca_file", s.CAFile, "CA file") {
		if _, err := LoadCertPool(s.CAFile); err != nil {
			v.errf("identity.signin.ca_file", "%v", err)
		}
	}
	if s.Cert == "" || s.Key == "" {
		return
	}
	if v.readable("identity.signin.cert", s.Cert, "certificate") && v.readable("identity.signin.key", s.Key, "key") {
		if _, err := tls.LoadX509KeyPair(s.Cert, s.Key); err != nil {
			v.errf("identity.signin.cert", "%v", err)
		}
	}
}
