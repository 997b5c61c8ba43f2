package signin

import (
	"bytes"
	"html/template"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
)

// pageData is what the one page shows.
type pageData struct {
	School, Label string
	Addr          string // this device's address, as the page saw it
	Device        string // the school device at the address (Options.SchoolDevice): nobody signs in
	Signed        string // who is signed in at the address ("" nobody)
	Until         string // when that ends
	Token         string // the sign-out form's token
	Done          bool   // just signed in
	Out           bool   // just signed out
	Error         string
}

func (s *Service) pageData(addr netip.Addr) pageData {
	d := pageData{School: s.o.School, Label: s.o.Label, Addr: addr.String()}
	if s.o.SchoolDevice != nil {
		d.Device = s.o.SchoolDevice(addr)
	}
	return d
}

var pageTmpl = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en-GB">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{if .Error}}Not signed in{{else if .Device}}School computer{{else if .Out}}Signed out{{else if .Signed}}Signed in{{else}}Sign in{{end}} – {{.School}}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Arial,sans-serif;font-size:1.15rem;line-height:1.5;margin:0;background:#f3f4f6;color:#111}
main{max-width:34rem;margin:0 auto;padding:1.5rem 1rem}
h1{font-size:1.6rem;margin:.2rem 0 1rem}
.school{font-weight:600;color:#1f3a5f;margin:0}
.box{overflow-wrap:anywhere;background:#fff;border:1px solid #bbb;border-radius:.4rem;padding:1rem;margin:1rem 0}
.error{border-color:#a61b1b;border-width:2px}
button{font:inherit;font-weight:600;padding:.7rem 1.3rem;background:#1f3a5f;color:#fff;border:0;border-radius:.3rem;cursor:pointer;min-height:44px}
button.quiet{background:#fff;color:#1f3a5f;border:2px solid #1f3a5f}
button:focus,a:focus{outline:3px solid #b35c00;outline-offset:2px}
a{color:#1f3a5f}
.small{font-size:1rem;color:#333;overflow-wrap:anywhere}
</style>
</head>
<body>
<main>
<p class="school">{{.School}}</p>
{{if .Error}}<h1>You are not signed in</h1>
<div class="box error" role="alert"><p>{{.Error}}</p></div>
<p><a href="/">Back to the sign-in page</a></p>
{{else if .Device}}<h1>This is a school computer</h1>
<div class="box"><p>{{.Device}} is one of the school's own devices: the school's web filter applies the settings IT gave it, so nobody signs in here.</p>
<p>This page is for your own phone or laptop on the school Wi-Fi.</p></div>
{{else if .Out}}<h1>You are signed out</h1>
<p>This device is no longer signed in as you.</p>
<p><a href="/">Sign in again</a></p>
{{else if .Signed}}<h1>{{if .Done}}You are signed in{{else}}This device is signed in{{end}}</h1>
<div class="box"><p>Signed in as <strong>{{.Signed}}</strong> until {{.Until}}.</p>
<p>The school's web filter knows that this device is yours and applies your school's settings for you.{{if .Done}} You can close this page.{{end}}</p></div>
<form method="post" action="/signout"><input type="hidden" name="token" value="{{.Token}}">
<p><button type="submit">Sign out</button></p></form>
<p class="small">Not you? Sign out, or sign in with your own account:</p>
<form method="post" action="/start"><p><button type="submit" class="quiet">Sign in with {{.Label}}</button></p></form>
{{else}}<h1>Sign in to the school Wi-Fi</h1>
<p>Sign in with your school account so that the school's web filter knows this device is yours.</p>
<form method="post" action="/start"><p><button type="submit">Sign in with {{.Label}}</button></p></form>
<p class="small">You will go to your school's sign-in page and come back here.</p>
{{end}}
<p class="small">This device: {{.Addr}}</p>
</main>
</body>
</html>
`))

// render writes the page. Its policy allows forms to lead to the provider
// (the sign-in button posts to /start, which redirects there, and
// browsers apply form-action to redirects too).
func (s *Service) render(w http.ResponseWriter, status int, d pageData) {
	var b bytes.Buffer
	if err := pageTmpl.Execute(&b, d); err != nil {
		s.o.Log.Error("sign-in page: template", "err", err)
		http.Error(w, "Internal Server Error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action "+s.formAction()+"; frame-ancestors 'none'; base-uri 'none'")
	h.Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// formAction is 'self' and the provider's origins (the issuer's, and the
// authorisation endpoint's once discovered).
func (s *Service) formAction() string {
	out := "'self'"
	seen := map[string]bool{}
	add := func(u string) {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			return
		}
		o := p.Scheme + "://" + p.Host
		for _, c := range o {
			if c == ' ' || c == ';' || c == '\'' || c == '"' || c == ',' {
				return
			}
		}
		if !seen[o] {
			seen[o] = true
			out += " " + o
		}
	}
	add(s.o.Issuer)
	s.mu.Lock()
	if p := s.provider; p != nil {
		add(p.Endpoint().AuthURL)
	}
	s.mu.Unlock()
	return out
}
