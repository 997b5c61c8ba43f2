package console

import (
	"net/http"
	"net/url"
	"strings"
)

// A browser applies the sign-in page's CSP form-action to where its forms
// lead, redirects included: "Sign in with …" posts to /signin/oidc, which
// redirects to the provider's authorisation endpoint, so with form-action
// 'self' alone chromium aborts the sign-in. The sign-in page's policy
// therefore also allows the provider's origin: the issuer's, and the
// discovered authorisation endpoint's once known (the same origin at
// Microsoft and Google). Every other page keeps form-action 'self'.

// cspPolicy is the Content-Security-Policy of every answer (headers).
const cspPolicy = "default-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"

// origin is u's scheme://host[:port], or "" when u is not an absolute
// http(s) URL.
func origin(u string) string {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" || strings.ContainsAny(p.Host, " ;'\"") {
		return ""
	}
	return p.Scheme + "://" + p.Host
}

// signinPolicy sets the sign-in page's policy when provider sign-in is on.
func (s *Server) signinPolicy(w http.ResponseWriter) {
	if s.o.OIDC == nil || s.oidc == nil {
		return
	}
	srcs := []string{"'self'"}
	add := func(o string) {
		for _, x := range srcs {
			if x == o {
				return
			}
		}
		if o != "" {
			srcs = append(srcs, o)
		}
	}
	add(origin(s.o.OIDC.Issuer))
	s.oidc.mu.Lock()
	if p := s.oidc.provider; p != nil {
		add(origin(p.Endpoint().AuthURL))
	}
	s.oidc.mu.Unlock()
	w.Header().Set("Content-Security-Policy", strings.Replace(cspPolicy, "form-action 'self'", "form-action "+strings.Join(srcs, " "), 1))
}
