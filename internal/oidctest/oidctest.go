// Package oidctest is an OpenID provider for tests, run in the test
// process: discovery, JWKS, an authorisation endpoint that signs in the
// configured person at once, and a token endpoint that checks the client
// secret, the redirect URI and PKCE (S256) and returns an RS256-signed ID
// token. It serves HTTPS with httptest's certificate, which only its own
// Client trusts, so the code under test keeps TLS verification on.
package oidctest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Provider is a running test provider. Change what it says with Set.
type Provider struct {
	URL          string // the issuer
	ClientID     string
	ClientSecret string
	// Now is the provider's clock for the ID tokens' times (set it
	// before the first sign-in; default time.Now).
	Now func() time.Time

	srv   *httptest.Server
	key   *rsa.PrivateKey
	other *rsa.PrivateKey // signs ID tokens when Claims.BadSignature is set
	t     testing.TB

	mu     sync.Mutex
	codes  map[string]grant
	claims Claims
	tokens int
	jwks   int
}

// KeyFetches is how many times the provider's keys (JWKS) were fetched.
func (p *Provider) KeyFetches() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.jwks
}

// Claims is who the provider signs in, and how it may misbehave.
type Claims struct {
	Email         string
	Name          string
	EmailVerified *bool          // nil: true
	Extra         map[string]any // more claims (groups, hd); a nil value leaves that claim out
	Nonce         string         // when set, the ID token carries this nonce instead of the one asked for
	Audience      string         // when set, the ID token's audience
	BadSignature  bool           // sign the ID token with a key the JWKS does not hold
	Expired       bool           // the ID token expired an hour ago
}

type grant struct{ challenge, nonce, redirect string }

// New starts a provider for clientID and secret; it stops with the test.
func New(t testing.TB, clientID, secret string) *Provider {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &Provider{Now: time.Now, ClientID: clientID, ClientSecret: secret, key: key, other: other, t: t, codes: map[string]grant{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"issuer": p.URL, "authorization_endpoint": p.URL + "/authorize",
			"token_endpoint": p.URL + "/token", "jwks_uri": p.URL + "/jwks", "id_token_signing_alg_values_supported": []string{"RS256"},
			"response_types_supported": []string{"code"}, "code_challenge_methods_supported": []string{"S256"}})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.jwks++
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	})
	mux.HandleFunc("GET /authorize", p.authorize)
	mux.HandleFunc("POST /token", p.token)
	p.srv = httptest.NewTLSServer(mux)
	p.URL = p.srv.URL
	t.Cleanup(p.srv.Close)
	return p
}

// Client trusts the provider's certificate (and nothing else).
func (p *Provider) Client() *http.Client { return p.srv.Client() }

// Certificate is the provider's TLS certificate.
func (p *Provider) Certificate() *x509.Certificate { return p.srv.Certificate() }

// CertPEM is the provider's certificate, for a ca_file.
func (p *Provider) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.srv.Certificate().Raw})
}

// Set replaces who the provider signs in.
func (p *Provider) Set(c Claims) {
	p.mu.Lock()
	p.claims = c
	p.mu.Unlock()
}

// Tokens is how many ID tokens the provider has issued.
func (p *Provider) Tokens() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tokens
}

func randomString() string {
	b := make([]byte, 18)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client_id") != p.ClientID || q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" ||
		q.Get("code_challenge") == "" || q.Get("state") == "" || q.Get("nonce") == "" || !strings.Contains(q.Get("scope"), "openid") {
		http.Error(w, "bad authorisation request: "+r.URL.RawQuery, http.StatusBadRequest)
		return
	}
	code := randomString()
	p.mu.Lock()
	p.codes[code] = grant{q.Get("code_challenge"), q.Get("nonce"), q.Get("redirect_uri")}
	p.mu.Unlock()
	http.Redirect(w, r, q.Get("redirect_uri")+"?"+url.Values{"code": {code}, "state": {q.Get("state")}}.Encode(), http.StatusFound)
}

func (p *Provider) token(w http.ResponseWriter, r *http.Request) {
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostFormValue("client_id"), r.PostFormValue("client_secret")
	}
	code := r.PostFormValue("code")
	p.mu.Lock()
	g, found := p.codes[code]
	delete(p.codes, code)
	c := p.claims
	p.mu.Unlock()
	sum := sha256.Sum256([]byte(r.PostFormValue("code_verifier")))
	w.Header().Set("Content-Type", "application/json")
	switch {
	case id != p.ClientID || secret != p.ClientSecret:
		w.WriteHeader(http.StatusUnauthorized)
		json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client"})
		return
	case !found || r.PostFormValue("grant_type") != "authorization_code" || r.PostFormValue("redirect_uri") != g.redirect ||
		base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge:
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant"})
		return
	}
	nonce, aud := g.nonce, p.ClientID
	if c.Nonce != "" {
		nonce = c.Nonce
	}
	if c.Audience != "" {
		aud = c.Audience
	}
	verified := true
	if c.EmailVerified != nil {
		verified = *c.EmailVerified
	}
	now := time.Now()
	if p.Now != nil {
		now = p.Now()
	}
	if c.Expired {
		now = now.Add(-2 * time.Hour)
	}
	claims := map[string]any{"iss": p.URL, "sub": "user-" + c.Email, "aud": aud, "iat": now.Unix(),
		"exp": now.Add(5 * time.Minute).Unix(), "nonce": nonce, "email": c.Email, "email_verified": verified}
	if c.Name != "" {
		claims["name"] = c.Name
	}
	for k, v := range c.Extra {
		if v == nil { // a nil value leaves the claim out (Entra ID sends no email_verified)
			delete(claims, k)
			continue
		}
		claims[k] = v
	}
	body, _ := json.Marshal(claims)
	key := p.key
	if c.BadSignature {
		key = p.other
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		p.t.Error(err)
		return
	}
	obj, err := signer.Sign(body)
	if err != nil {
		p.t.Error(err)
		return
	}
	tok, _ := obj.CompactSerialize()
	p.mu.Lock()
	p.tokens++
	p.mu.Unlock()
	json.NewEncoder(w).Encode(map[string]any{"access_token": randomString(), "token_type": "Bearer", "expires_in": 300, "id_token": tok})
}
