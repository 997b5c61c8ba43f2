package console

import "net/http"

// The session cookie is SameSite=Strict: a browser does not send it on a
// navigation that another site started, such as following an alert's link
// from webmail, nor along the redirects after it. Such an arrival reaches
// the sign-in page without the cookie even when the browser is signed in.
// Rather than loosen the cookie to Lax (which would let other sites' links
// and top-level forms reach the console with the session), the sign-in
// page answers a cross-site navigation with a page of the console's own
// that loads the same address again at once (meta refresh, no script).
// That second request is started by the console's own page, so the browser
// sends the Strict cookie: a signed-in browser goes straight on to the
// page it asked for, and one that is not signed in sees the sign-in form.
// The link itself still grants nothing, and state-changing requests keep
// their form token and cross-origin check.

// crossSiteNavigation reports whether r is a top-level navigation that
// another site started (Fetch Metadata; browsers without it get the
// sign-in form as before).
func crossSiteNavigation(r *http.Request) bool {
	return r.Method == http.MethodGet && r.Header.Get("Sec-Fetch-Site") == "cross-site" && r.Header.Get("Sec-Fetch-Mode") == "navigate"
}

// sameSiteContinue answers with the page that loads r's address again
// from the console's own site.
func (s *Server) sameSiteContinue(w http.ResponseWriter, r *http.Request) {
	s.render(w, http.StatusOK, "continue", map[string]any{"To": r.URL.RequestURI()})
}
