package config

import (
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/gatehouse-filter/gatehouse/blocklists"
)

// Console configures the safeguarding console (package console): its
// listener, who may reach it, TLS and session limits.
type Console struct {
	// Listen is the console's address; "off" turns it off. It is started
	// only once an account exists (gatehouse accounts add).
	Listen string `yaml:"listen"`
	// Allow lists who may reach the console; empty: clients.allow.
	Allow []netip.Prefix `yaml:"allow"`
	// Cert and Key are a PEM certificate and key for HTTPS. Without them
	// the console uses plain HTTP on a loopback address and a self-signed
	// certificate (made once, kept 0600 beside the database) elsewhere.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// IdleTimeout signs a browser out after this long without a request.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// SessionLimit signs a browser out this long after sign-in, busy or not.
	SessionLimit Duration `yaml:"session_limit"`
	// URL is the console's address as staff reach it
	// (https://filter.school.example:8080): alerts and digests link to
	// each incident under it. Empty: the mail gives the reference only.
	URL string `yaml:"url"`
	// OIDC is sign-in with the school's identity provider (Microsoft
	// Entra ID, Google Workspace); nil: passwords only.
	OIDC *ConsoleOIDC `yaml:"oidc"`
}

// ConsoleOIDC is sign-in to the console with an OpenID Connect provider.
// Accounts are matched by email; nobody gets an account by signing in.
type ConsoleOIDC struct {
	Issuer       string  `yaml:"issuer"`        // https URL; discovery at ISSUER/.well-known/openid-configuration
	ClientID     string  `yaml:"client_id"`     // the console's app (client) ID at the provider
	ClientSecret *Secret `yaml:"client_secret"` // file: or env:
	// RedirectURL is the console's callback as the provider knows it:
	// https://CONSOLE-HOST[:PORT]/signin/oidc/callback.
	RedirectURL string   `yaml:"redirect_url"`
	Domains     []string `yaml:"domains"` // email domains that may sign in this way
	// TrustIdPMFA skips the console's own second factor after the
	// provider's sign-in: set it only when the provider enforces MFA
	// for every account that can sign in here.
	TrustIdPMFA bool   `yaml:"trust_idp_mfa"`
	Label       string `yaml:"label"` // the button: "Sign in with LABEL" (default "your school account")
}

// Console defaults.
const (
	DefaultConsoleListen = "127.0.0.1:8080"
	DefaultConsoleIdle   = 15 * time.Minute
	DefaultConsoleLimit  = 12 * time.Hour
)

func defaultConsole() Console {
	return Console{Listen: DefaultConsoleListen, IdleTimeout: Duration(DefaultConsoleIdle), SessionLimit: Duration(DefaultConsoleLimit)}
}

// ConsoleOff reports whether the console is turned off.
func (c *Config) ConsoleOff() bool {
	return strings.EqualFold(strings.TrimSpace(c.Console.Listen), "off")
}

// ConsoleTLS says how the console serves: with the configured
// certificate, a self-signed one at the returned paths (beside the
// database), or plain HTTP on loopback (ok false).
func (c *Config) ConsoleTLS() (cert, key string, selfSigned, ok bool) {
	if c.Console.Cert != "" {
		return c.Console.Cert, c.Console.Key, false, true
	}
	if ConsoleLoopback(c.Console.Listen) {
		return "", "", false, false
	}
	dir := filepath.Dir(c.Database)
	return filepath.Join(dir, "console-cert.pem"), filepath.Join(dir, "console-key.pem"), true, true
}

// ConsoleLoopback reports whether a listen address is loopback only.
func ConsoleLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// ConsoleAllow is who may reach the console.
func (c *Config) ConsoleAllow() []netip.Prefix {
	if len(c.Console.Allow) > 0 {
		return c.Console.Allow
	}
	return c.Clients.Allow
}

func (v *validator) consoleSection() {
	c := &v.c.Console
	if !v.c.ConsoleOff() {
		// listeners() checks the address itself and its clashes.
		if (c.Cert == "") != (c.Key == "") {
			at := "console.cert" // the one that is set
			if c.Cert == "" {
				at = "console.key"
			}
			v.errf(at, "cert and key go together: set both, or neither (a self-signed certificate is made off loopback)")
		}
	}
	if c.URL != "" {
		u, err := url.Parse(c.URL)
		switch {
		case err != nil:
			v.errf("console.url", "invalid URL %q: %v", c.URL, err)
		case u.Scheme != "https" && u.Scheme != "http", u.Host == "":
			v.errf("console.url", "%q is not an http(s) address with a host (e.g. https://filter.school.example:8080)", c.URL)
		case u.User != nil, u.RawQuery != "", u.Fragment != "":
			v.errf("console.url", "%q: give the console's base address only (no user, query or #fragment)", c.URL)
		}
	}
	if len(c.Allow) == 0 && !v.c.ConsoleOff() && !ConsoleLoopback(strings.TrimSpace(c.Listen)) {
		v.warnf("console.listen", "console.allow is not set, so every client in clients.allow (pupils' networks too) can reach the console's sign-in page, and five wrong passwords lock a DSL's account for 15 minutes; list the staff networks in console.allow")
	}
	for i, n := range c.Allow {
		path := joinIndex("console.allow", i)
		if !n.IsValid() {
			v.errf(path, "empty network")
		} else if n.Bits() == 0 {
			v.errf(path, "%s would let anyone reach the console; list the staff networks", n)
		}
	}
	if o := c.OIDC; o != nil && !v.c.ConsoleOff() {
		v.consoleOIDC(o)
	}
	v.between("console.idle_timeout", c.IdleTimeout, time.Minute, time.Hour)
	v.between("console.session_limit", c.SessionLimit, 15*time.Minute, 24*time.Hour)
	if c.SessionLimit < c.IdleTimeout {
		v.errf("console.session_limit", "must not be shorter than console.idle_timeout (%s)", fmtDur(c.IdleTimeout.D()))
	}
}

// GoogleIssuer reports whether an OpenID Connect issuer is Google's, whose
// ID tokens name a Workspace account's domain in "hd" (a consumer account
// made with a school address has none): the console and the sign-in page
// both require it then.
func GoogleIssuer(issuer string) bool {
	return strings.TrimSuffix(issuer, "/") == "https://accounts.google.com"
}

// oidcClient checks what the console's and the sign-in page's OpenID
// Connect settings share: the https issuer, the client ID of app ("the
// console's") and its secret (from a file such as /etc/gatehouse/FILE, or
// a variable).
func (v *validator) oidcClient(at, issuer, clientID string, secret *Secret, app, file string) {
	if u, err := url.Parse(strings.TrimSpace(issuer)); issuer == "" || err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
		v.errf(at+".issuer", "want the provider's https issuer URL (e.g. https://login.microsoftonline.com/TENANT-ID/v2.0 or https://accounts.google.com)")
	}
	if strings.TrimSpace(clientID) == "" {
		v.errf(at+".client_id", "want %s client (application) ID at the provider", app)
	}
	if secret == nil {
		v.errf(at+".client_secret", `want the client secret from a file or variable: {file: /etc/gatehouse/%s} or {env: NAME}`, file)
	} else {
		v.secret(at+".client_secret", secret)
	}
}

// OIDCCallbackPath is where the provider sends the browser back.
const OIDCCallbackPath = "/signin/oidc/callback"

func (v *validator) consoleOIDC(o *ConsoleOIDC) {
	const at = "console.oidc"
	v.oidcClient(at, o.Issuer, o.ClientID, o.ClientSecret, "the console's", "oidc-secret")
	v.entraTenant(at, o.Issuer)
	u, err := url.Parse(strings.TrimSpace(o.RedirectURL))
	switch {
	case o.RedirectURL == "" || err != nil || u.Host == "":
		v.errf(at+".redirect_url", "want the console's callback URL, https://CONSOLE-HOST%s", OIDCCallbackPath)
	case u.Path != OIDCCallbackPath:
		v.errf(at+".redirect_url", "the path must be %s", OIDCCallbackPath)
	case u.Scheme != "https" && !(u.Scheme == "http" && ConsoleLoopback(net.JoinHostPort(u.Hostname(), "1"))):
		v.errf(at+".redirect_url", "must be https (http only on a loopback address)")
	}
	if len(o.Domains) == 0 {
		v.errf(at+".domains", "list the email domains that may sign in this way (e.g. [school.example])")
	}
	for i, d := range o.Domains {
		o.Domains[i] = strings.ToLower(strings.TrimSpace(d))
		if h, err := blocklists.NormalizeHost(o.Domains[i]); err != nil || h != o.Domains[i] || !strings.Contains(h, ".") {
			v.errf(joinIndex(at+".domains", i), "%q is not an email domain", d)
		}
	}
	if len(o.Label) > 40 {
		v.errf(at+".label", "at most 40 characters")
	}
}
