package httpproxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/identity"
	"github.com/gatehouse-filter/gatehouse/internal/maproom"
	"github.com/gatehouse-filter/gatehouse/policy"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// reportPath receives "report a mistake" forms, on the proxy (the form
// posts to the blocked site's address, which the proxy answers itself) and
// on the admin listener.
const reportPath = "/.gatehouse/report"

// Built-in acceptable-use wording per kind of block.
var defaultRules = map[bl.Kind]string{
	bl.KindInappropriate: "The school's acceptable use policy says you must not try to view material that is illegal, harmful or inappropriate in school.",
	bl.KindBypass:        "The school's acceptable use policy says you must not try to get around the school's filtering or security systems.",
	bl.KindPolicy:        "The school's acceptable use policy keeps sites like this for outside school, or outside lesson times.",
	bl.KindProbe:         "This address is used by devices automatically and is handled by the school's network.",
}

const securityRule = "This site may harm your device or trick you into giving away your details. The school's acceptable use policy says suspected viruses and scams are reported to IT."

type pageData struct {
	School, Host, URL, Title, Rule, When, Who, Ref, Contact, AUPURL, Category, Action, Message string
	Restricted, Form, Sent                                                                     bool
	// Mailed says when a report is mailed to IT ("within 5 minutes"); ""
	// when it is not mailed (no SMTP relay, or no IT or DSL address).
	Mailed string
	// Token binds the form to this page (reportform.go).
	Token string
	// SignIn is the paragraph pointing to the sign-in page
	// (identity.signin), shown where nobody is known at the address (no
	// user, no device): a pupil's own device learns what to do.
	SignIn template.HTML
	signin template.HTML // that paragraph, for the config ("" when the page is off)
}

var signinTmpl = template.Must(template.New("signin").Parse(`<p>Using your own phone or laptop? <a href="{{.}}">Sign in with your school account</a> so that the school's web filter knows it is you.</p>
`))

// signinPara is the block page's sign-in paragraph for cfg ("" when the
// sign-in page is off).
func signinPara(cfg *config.Config) template.HTML {
	u := cfg.SigninURL()
	if u == "" {
		return ""
	}
	var b strings.Builder
	if err := signinTmpl.Execute(&b, u); err != nil {
		return ""
	}
	return template.HTML(b.String())
}

// offerSignin reports whether a block's page offers the sign-in page: no
// user is known, and no school device (clients.devices, by its address or
// by the MAC its lease or RADIUS session gives: a shared computer is
// filtered as configured and the page signs nobody in there). A device
// only named by its DHCP lease (a pupil's own phone) is offered it.
func offerSignin(d *policy.Decision, user string) bool {
	return user == "" && !d.SchoolDevice
}

var pageTmpl = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en-GB">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{if .Restricted}}Page not available{{else if .Message}}{{.Message}}{{else}}Blocked: {{.Host}}{{end}} – {{.School}}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Arial,sans-serif;font-size:1.1rem;line-height:1.5;margin:0;background:#f3f4f6;color:#111}
main{max-width:38rem;margin:0 auto;padding:1.5rem 1rem}
h1{font-size:1.6rem;margin:.2rem 0 1rem}
.school{font-weight:600;color:#1f3a5f;margin:0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem;background:#fff;border:1px solid #ccc;border-radius:.4rem;padding:1rem;margin:1rem 0}
dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere}
label{display:block;font-weight:600;margin:.8rem 0 .3rem}
textarea{width:100%;box-sizing:border-box;font:inherit;min-height:6rem;padding:.5rem;border:2px solid #555;border-radius:.3rem}
button{font:inherit;font-weight:600;margin-top:.8rem;padding:.6rem 1.2rem;background:#1f3a5f;color:#fff;border:0;border-radius:.3rem;cursor:pointer}
button:focus,textarea:focus,a:focus{outline:3px solid #f5a623;outline-offset:2px}
a{color:#1f3a5f}
@media (max-width:30rem){dl{grid-template-columns:1fr}dd{margin-bottom:.4rem}}
</style>
</head>
<body>
<main>
<p class="school">{{.School}}</p>
{{if .Message}}<h1>{{.Message}}</h1>
{{if .Sent}}<p>Your report{{if .Ref}} about reference <strong>{{.Ref}}</strong>{{end}} has been recorded for IT{{if .Mailed}} and is emailed to them {{.Mailed}}{{end}}. The site stays blocked unless IT unblock it.</p>
{{else if .Ref}}<p>Reference: <strong>{{.Ref}}</strong>{{if .Contact}}. Contact: {{.Contact}}{{end}}</p>{{end}}
{{else if .Restricted}}<h1>This page is not available</h1>
<p>Access to this page has been blocked because it is on a list of illegal content that every school filter must block.</p>
<dl>
<dt>Time</dt><dd>{{.When}}</dd>
<dt>Computer or user</dt><dd>{{.Who}}</dd>
<dt>Reference</dt><dd>{{.Ref}}</dd>
</dl>
<p>If you are worried about something you have seen online, talk to a member of staff you trust.{{if .Contact}} If you think this is a mistake, contact {{.Contact}} and quote the reference.{{end}}</p>
{{else}}<h1>This site is blocked</h1>
<p>The school's web filter stopped <strong>{{.Host}}</strong>{{if .Title}} because it is listed as <strong>{{.Title}}</strong>{{end}}.</p>
<p>{{.Rule}}{{if .AUPURL}} <a href="{{.AUPURL}}">Read the acceptable use policy</a>.{{end}}</p>
<dl>
<dt>Address</dt><dd>{{.URL}}</dd>
{{if .Title}}<dt>Category</dt><dd>{{.Title}}</dd>{{end}}
<dt>Time</dt><dd>{{.When}}</dd>
<dt>Computer or user</dt><dd>{{.Who}}</dd>
<dt>Reference</dt><dd>{{.Ref}}</dd>
</dl>
{{.SignIn}}{{if .Form}}<form method="post" action="{{.Action}}">
<h2>Is this a mistake?</h2>
<p>If you need this site for your work, say why below. Your report goes to IT with the reference; the site stays blocked unless they unblock it.</p>
<input type="hidden" name="ref" value="{{.Ref}}">
<input type="hidden" name="url" value="{{.URL}}">
<input type="hidden" name="category" value="{{.Category}}">
<input type="hidden" name="t" value="{{.Token}}">
<label for="why">Why do you need this site?</label>
<textarea id="why" name="why" maxlength="1000" required></textarea>
<button type="submit">Report a mistake</button>
</form>{{end}}
{{if .Contact}}<p>For help, contact {{.Contact}}.</p>{{end}}
{{end}}
</main>
</body>
</html>
`))

// refAlphabet avoids characters people confuse (0/O, 1/I/L).
const refAlphabet = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"

// newRef makes a reference code such as "GH-7K3F-9Q2M".
func newRef() string {
	v := rand.Uint64()
	var b [12]byte
	copy(b[:], "GH-")
	for i := 3; i < 12; i++ {
		if i == 7 {
			b[i] = '-'
			continue
		}
		b[i] = refAlphabet[v%uint64(len(refAlphabet))]
		v /= uint64(len(refAlphabet))
	}
	return string(b[:])
}

// who names the client as reports do: user, device, IP.
func who(d *policy.Decision, user string, ip netip.Addr) string {
	switch {
	case user != "" && d.Device != "":
		return user + " on " + d.Device
	case user != "":
		return user + " (" + ip.String() + ")"
	case d.Device != "":
		return d.Device + " (" + ip.String() + ")"
	}
	return ip.String()
}

// pageFor is the block page's data as the template takes it.
func (s *Server) pageFor(info *reqInfo, cfg *config.Config, displayURL string) pageData {
	d := &info.dec
	pd := staticPage(cfg, d)
	pd.Host = info.host
	pd.When = s.now().In(cfg.Location()).Format(whenLayout)
	pd.Who = who(d, info.user, info.client)
	if offerSignin(d, info.user) {
		pd.SignIn = pd.signin
	}
	pd.Ref = newRef()
	if !d.Restricted {
		pd.URL = truncate(formValue(displayURL), 200)
		pd.Token = s.reports.key.token(info.client, pd.Ref, pd.URL, pd.Category)
	}
	return pd
}

// whenLayout is how the block page shows the time.
const whenLayout = "Monday 2 January 2006, 15:04"

// staticPage is the part of the block page's data that depends only on
// the config and the kind of block, not on the request.
func staticPage(cfg *config.Config, d *policy.Decision) pageData {
	bp := cfg.Proxy.BlockPage
	pd := pageData{
		School:     cfg.School.Name,
		Contact:    bp.Contact,
		AUPURL:     bp.AUPURL,
		Restricted: d.Restricted,
		Action:     reportPath,
		Form:       true,
		signin:     signinPara(cfg),
	}
	if d.Restricted {
		pd.Form = false
		return pd
	}
	if d.HasCategory {
		info := d.Category.Info()
		pd.Title, pd.Category = info.Title, info.Name
		switch {
		case bp.Rules[info.Name] != "":
			pd.Rule = bp.Rules[info.Name]
		case d.Category == bl.Malware || d.Category == bl.Phishing:
			pd.Rule = securityRule
		default:
			pd.Rule = defaultRules[info.Kind]
		}
	}
	if pd.Rule == "" {
		pd.Rule = "The school has chosen not to allow this site for your group."
	}
	return pd
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// blockPage writes the block page for an HTTP block of displayURL and
// returns its size and reference code. The page comes from a layout
// built once per config and kind of block (pageLayout): only the
// request's own fields are escaped and appended, into a pooled buffer.
// With proto set, the block's event is recorded first and the page goes
// only once the event is durable (eventRef), so a block the pupil saw is
// never lost to a crash.
//
// A request that is not a page load (wantsPage: an image, script or
// fetch from a page, or a tool such as curl) gets one line of plain text
// with the same reference instead: nobody sees an HTML page there, and a
// page full of blocked ad hosts or a tool retrying costs ~100 bytes a
// request rather than ~2.4 KB.
func (s *Server) blockPage(w http.ResponseWriter, r *http.Request, info *reqInfo, cfg *config.Config, displayURL, proto string) (int, string) {
	d := &info.dec
	ref := newRef()
	bp := pageBufs.Get().(*[]byte)
	page := wantsPage(r)
	var b []byte
	var lay *pageLayout
	var f pageFields
	if page {
		lays := s.layouts(cfg)
		lay = lays.get(cfg, d)
		f = pageFields{
			host: info.host, url: displayURL, when: s.now().In(lays.loc), dec: d, user: info.user, client: info.client, ref: ref,
			signin: lay.signin != "" && offerSignin(d, info.user), key: s.reports.key,
		}
		b = lay.render((*bp)[:0], &f)
	} else {
		b = appendConnectBlock((*bp)[:0], info.host, cfg.School.Name, connectWhy(d, ""), ref)
	}
	if proto != "" {
		if first := s.eventRef(info, proto, "block", http.StatusForbidden, int64(len(b)), "", ref); first != ref {
			// A repeat quotes the stored event's reference (of the same
			// length, so the page's size is the event's), and its form's
			// token is that reference's.
			if page {
				lay.reRef(b, &f, first)
			} else {
				replaceRef(b, ref, first)
			}
			ref = first
		}
	}
	var n int
	if page {
		n = sendPage(w, http.StatusForbidden, b, ref)
	} else {
		n = sendText(w, http.StatusForbidden, b, ref)
	}
	if cap(b) <= 64<<10 {
		*bp = b
		pageBufs.Put(bp)
	}
	return n, ref
}

// wantsPage tells whether r is a page load that a person will see (a
// browser's navigation: Sec-Fetch-Dest document or a frame, or, from a
// browser that does not send Sec-Fetch-*, an Accept naming HTML). An
// image, script, style sheet or fetch from a page, and a tool that asks
// for anything (curl's "*/*", no Accept at all) get plain text. nil: a
// page.
func wantsPage(r *http.Request) bool {
	if r == nil {
		return true
	}
	if v := r.Header["Sec-Fetch-Dest"]; len(v) > 0 {
		switch strings.ToLower(strings.TrimSpace(v[0])) {
		case "document", "iframe", "frame", "embed", "object":
			return true
		}
		return false
	}
	if v := r.Header["Sec-Fetch-Mode"]; len(v) > 0 && strings.EqualFold(strings.TrimSpace(v[0]), "navigate") {
		return true
	}
	for _, a := range r.Header["Accept"] {
		if containsFold(a, "text/html") || containsFold(a, "application/xhtml+xml") {
			return true
		}
	}
	return false
}

// containsFold reports whether s contains the lower-case ASCII sub, in
// any case, without allocating.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// writePage renders pd with the template (messages and tests; block pages
// go through blockPage).
func (s *Server) writePage(w http.ResponseWriter, status int, pd pageData) int {
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, pd); err != nil {
		s.log.Error("proxy: block page", "err", err)
	}
	return sendPage(w, status, buf.Bytes(), pd.Ref)
}

// The page's fixed header fields, shared by every answer (full slices, so
// that an append copies instead of writing into them).
var pageHeaders = [...]struct {
	k string
	v []string
}{
	{"Content-Type", []string{"text/html; charset=utf-8"}},
	{"Cache-Control", []string{"no-store"}},
	{"Content-Security-Policy", []string{"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"}},
	{"X-Content-Type-Options", []string{"nosniff"}},
	{"Referrer-Policy", []string{"no-referrer"}},
	{"Via", []string{Via}},
}

// pageHeaderLines are the same fields as the front writes them, for a
// front writer to copy as they are.
var pageHeaderLines = func() string {
	var b strings.Builder
	for _, f := range pageHeaders {
		b.WriteString(f.k + ": " + f.v[0] + "\r\n")
	}
	return b.String()
}()

// sendPage writes an HTML page with the block page's headers.
func sendPage(w http.ResponseWriter, status int, body []byte, ref string) int {
	h := w.Header()
	if fw, ok := w.(*frontWriter); !ok || !fw.setFixedHeader(pageHeaderLines) {
		for _, f := range pageHeaders {
			h[f.k] = f.v[:1:1]
		}
	}
	vals := make([]string, 2) // Content-Length and the reference in one allocation
	vals[0] = strconv.Itoa(len(body))
	h["Content-Length"] = vals[0:1:1]
	if ref != "" {
		vals[1] = ref
		h["X-Gatehouse-Ref"] = vals[1:2:2]
	}
	w.WriteHeader(status)
	n, _ := w.Write(body)
	return n
}

// textHeaderLines are the fixed header fields of a blocked CONNECT's
// answer, for a front writer to copy as they are.
const textHeaderLines = "Content-Type: text/plain; charset=utf-8\r\nVia: " + Via + "\r\n"

var (
	hdrText = []string{"text/plain; charset=utf-8"}
	hdrVia  = []string{Via}
)

// appendConnectBlock appends the text of a blocked CONNECT's answer.
func appendConnectBlock(b []byte, host, school, why, ref string) []byte {
	b = append(append(append(b, "403 Forbidden: "...), host...), " is blocked by "...)
	b = append(append(b, school...), "'s web filter ("...)
	b = append(append(b, why...), "). Reference "...)
	return append(append(b, ref...), ".\n"...)
}

// refuseConnect answers a blocked CONNECT with a line of plain text (a
// browser shows its own error for a refused tunnel; tools print it), once
// the block's event (reason: why the tunnel was refused) is durable. The
// connection stays open.
func (s *Server) refuseConnect(w http.ResponseWriter, info *reqInfo, school, why, reason string) {
	ref := newRef()
	bp := pageBufs.Get().(*[]byte)
	b := appendConnectBlock((*bp)[:0], info.host, school, why, ref)
	if first := s.eventRef(info, "connect", "block", http.StatusForbidden, int64(len(b)), reason, ref); first != ref {
		replaceRef(b, ref, first) // a repeat quotes the stored event's reference
		ref = first
	}
	sendText(w, http.StatusForbidden, b, ref)
	*bp = b
	pageBufs.Put(bp)
	answeredHere(w)
}

// sendText writes a plain-text answer with the block page's reference.
func sendText(w http.ResponseWriter, status int, body []byte, ref string) int {
	h := w.Header()
	if fw, ok := w.(*frontWriter); !ok || !fw.setFixedHeader(textHeaderLines) {
		h["Content-Type"] = hdrText[:1:1]
		h["Via"] = hdrVia[:1:1]
	}
	vals := make([]string, 2)
	vals[0], vals[1] = strconv.Itoa(len(body)), ref
	h["Content-Length"] = vals[0:1:1]
	h["X-Gatehouse-Ref"] = vals[1:2:2]
	w.WriteHeader(status)
	n, _ := w.Write(body)
	return n
}

// replaceRef writes ref in place of every occurrence of old in page (both
// are reference codes, of one length; old is fresh and random, so it
// stands nowhere else).
func replaceRef(page []byte, old, ref string) {
	if len(old) != len(ref) {
		return
	}
	for i := 0; ; {
		j := bytes.Index(page[i:], []byte(old))
		if j < 0 {
			return
		}
		copy(page[i+j:], ref)
		i += j + len(ref)
	}
}

var pageBufs = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}

// pageSlot names a per-request field of the block page.
type pageSlot uint8

const (
	slotHost pageSlot = iota
	slotURL
	slotWhen
	slotWho
	slotRef
	slotSignin // the sign-in paragraph, where nobody is known
	slotToken  // the report form's token (reportform.go)
	numSlots
)

// pageLayout is the block page for one config and kind of block, rendered
// once by pageTmpl with a marker in each per-request field and split at
// the markers: parts[0], slots[0], parts[1], …, parts[len(slots)]. Every
// slot sits in HTML text, RCDATA (<title>) or a quoted attribute, where
// html/template escapes with the same table as appendHTML, so the page is
// byte for byte what the template would write (TestBlockPageLayout).
type pageLayout struct {
	parts    []string
	slots    []pageSlot
	signin   string // slotSignin's text, when nobody is known
	category string // the form's category field (the token covers it)
}

// pageFields are the per-request fields of a block page.
type pageFields struct {
	host, url string
	when      time.Time // in the school's time zone
	dec       *policy.Decision
	user      string
	client    netip.Addr
	ref       string
	signin    bool       // offer the sign-in page (offerSignin)
	key       *reportKey // the report form's token key

	// Set by render, for reRef: where the form's token is in the page
	// (-1: none), and the address as the token covers it.
	tokenAt    int
	shown, cut string
}

func (l *pageLayout) render(b []byte, f *pageFields) []byte {
	// The address as shown and as the form sends it back: valid UTF-8
	// (formValue), cut at 200 bytes.
	u, cut := formValue(f.url), ""
	if len(u) > 200 {
		n := 200
		for n > 0 && !utf8.RuneStart(u[n]) {
			n--
		}
		u, cut = u[:n], "…"
	}
	f.tokenAt, f.shown, f.cut = -1, u, cut
	for i, slot := range l.slots {
		b = append(b, l.parts[i]...)
		switch slot {
		case slotHost:
			b = appendHTML(b, f.host)
		case slotURL:
			b = append(appendHTML(b, u), cut...)
		case slotToken:
			f.tokenAt = len(b)
			b = f.key.appendToken(b, f.client, f.ref, u, cut, l.category) // base64url only
		case slotWhen:
			b = f.when.AppendFormat(b, whenLayout) // letters, digits, ", :" only
		case slotWho:
			b = appendWho(b, f.dec, f.user, f.client)
		case slotRef:
			b = append(b, f.ref...) // refAlphabet and '-' only
		case slotSignin:
			if f.signin {
				b = append(b, l.signin...)
			}
		}
	}
	return append(b, l.parts[len(l.parts)-1]...)
}

// reRef makes b, the page render wrote for f, quote ref instead of
// f.ref, as a render with ref would: the reference in place (the same
// length) and the form's token made again for it where render wrote it
// (the same length too), so a repeat's page costs no second render.
func (l *pageLayout) reRef(b []byte, f *pageFields, ref string) {
	replaceRef(b, f.ref, ref)
	if f.tokenAt >= 0 {
		f.key.appendToken(b[f.tokenAt:f.tokenAt], f.client, ref, f.shown, f.cut, l.category)
	}
	f.ref = ref
}

// appendWho appends who(d, user, ip), escaped.
func appendWho(b []byte, d *policy.Decision, user string, ip netip.Addr) []byte {
	switch {
	case user != "" && d.Device != "":
		return appendHTML(append(appendHTML(b, user), " on "...), d.Device)
	case user != "":
		b = append(appendHTML(b, user), " ("...)
		return append(appendIP(b, ip), ')')
	case d.Device != "":
		b = append(appendHTML(b, d.Device), " ("...)
		return append(appendIP(b, ip), ')')
	}
	return appendIP(b, ip)
}

// appendIP appends ip as ip.String() writes it (no character in it needs
// escaping; a zone is a network interface name and is escaped anyway).
func appendIP(b []byte, ip netip.Addr) []byte {
	if !ip.IsValid() || ip.Zone() != "" {
		return appendHTML(b, ip.String())
	}
	return ip.AppendTo(b)
}

// appendHTML appends s escaped as html/template escapes text and quoted
// attribute values: NUL, quotes, '&', '+', '<' and '>' (all ASCII, so a
// byte loop is exact even for invalid UTF-8, which it leaves as it is).
func appendHTML(b []byte, s string) []byte {
	last := 0
	for i := 0; i < len(s); i++ {
		var repl string
		switch s[i] {
		case 0:
			repl = "\uFFFD"
		case '"':
			repl = "&#34;"
		case '&':
			repl = "&amp;"
		case '\'':
			repl = "&#39;"
		case '+':
			repl = "&#43;"
		case '<':
			repl = "&lt;"
		case '>':
			repl = "&gt;"
		default:
			continue
		}
		b = append(append(b, s[last:i]...), repl...)
		last = i + 1
	}
	return append(b, s[last:]...)
}

// pageLayouts holds the layouts built for one config: [0] restricted,
// [1] no category, [2+c] category c. At most 258 small layouts per config;
// a reload starts a new set.
type pageLayouts struct {
	cfg *config.Config
	loc *time.Location
	l   [2 + 256]atomic.Pointer[pageLayout]
}

// layouts returns the layouts for cfg, starting a new set when the config
// has changed.
func (s *Server) layouts(cfg *config.Config) *pageLayouts {
	if p := s.pages.Load(); p != nil && p.cfg == cfg {
		return p
	}
	p := &pageLayouts{cfg: cfg, loc: cfg.Location()}
	s.pages.Store(p)
	return p
}

// get returns the layout for d's kind of block, building it on first use.
func (p *pageLayouts) get(cfg *config.Config, d *policy.Decision) *pageLayout {
	i := 1
	switch {
	case d.Restricted:
		i = 0
	case d.HasCategory:
		i = 2 + int(d.Category)
	}
	if l := p.l[i].Load(); l != nil {
		return l
	}
	l := buildLayout(staticPage(cfg, d))
	p.l[i].Store(l)
	return l
}

// slotMarker is this process's marker prefix for the per-request fields:
// random, letters and digits only (html/template leaves them as they are),
// so no config text can contain it by chance.
var slotMarker = fmt.Sprintf("gh%016xz", rand.Uint64())

// buildLayout renders pd (its per-request fields empty) with markers in
// those fields and splits the result at them.
func buildLayout(pd pageData) *pageLayout {
	mark := func(s pageSlot) string { return slotMarker + string(rune('a'+s)) }
	pd.Host, pd.When, pd.Who, pd.Ref = mark(slotHost), mark(slotWhen), mark(slotWho), mark(slotRef)
	if pd.signin != "" {
		pd.SignIn = template.HTML(mark(slotSignin))
	}
	if !pd.Restricted {
		pd.URL = mark(slotURL)
	}
	if pd.Form {
		pd.Token = mark(slotToken)
	}
	var buf strings.Builder
	if err := pageTmpl.Execute(&buf, pd); err != nil {
		panic("httpproxy: the block page template failed on fixed data: " + err.Error())
	}
	out := buf.String()
	l := &pageLayout{signin: string(pd.signin), category: pd.Category}
	for {
		i := strings.Index(out, slotMarker)
		if i < 0 || i+len(slotMarker) >= len(out) {
			break
		}
		slot := pageSlot(out[i+len(slotMarker)] - 'a')
		if slot >= numSlots {
			break
		}
		l.parts = append(l.parts, out[:i])
		l.slots = append(l.slots, slot)
		out = out[i+len(slotMarker)+1:]
	}
	l.parts = append(l.parts, out)
	return l
}

// adminMux serves the PAC file, reports and block pages on the admin
// listener (and for non-proxy requests to the proxy port).
func (s *Server) adminMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /proxy.pac", s.pac)
	mux.HandleFunc("GET /wpad.dat", s.pac)
	mux.HandleFunc("POST "+reportPath, func(w http.ResponseWriter, r *http.Request) {
		s.handleReport(w, r, remoteIP(r))
	})
	mux.HandleFunc("/", s.dnsBlockPage)
	return mux
}

func remoteIP(r *http.Request) netip.Addr {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// dnsBlockPage explains a block to a browser the DNS resolver sent to the
// block-page address: the request's Host is the blocked site.
func (s *Server) dnsBlockPage(w http.ResponseWriter, r *http.Request) {
	eng := s.o.Engine()
	cfg := eng.Config()
	ip := remoteIP(r)
	host, _ := splitHostPort(r.Host)
	nh, addr, err := normHost(host)
	req, who := s.whoRequest(ip, s.logins.UserFor(ip), "") // as the resolver decided it
	var dec policy.Decision
	if err == nil && nh != "" {
		req.Host, req.Path, req.Addr = nh, r.URL.RequestURI(), addr
		dec = eng.Decide(req)
		if !addr.IsValid() {
			s.LookupBlocked(r.Context(), ip, nh, &dec) // blocked by its DNS answer (dnsblock.go)
		}
	}
	if dec.Action != policy.Block {
		pd := pageData{School: cfg.School.Name, Message: "This is the school's web filter", Contact: cfg.Proxy.BlockPage.Contact}
		s.writePage(w, http.StatusOK, pd)
		return
	}
	_, port := splitHostPort(r.Host)
	info := &reqInfo{client: ip, user: req.User, who: who, host: nh, port: port, dec: dec, method: r.Method, tls: r.TLS != nil}
	scheme := "http://"
	if info.tls { // the HTTPS block-page listener
		scheme = "https://"
		if info.port == "" {
			info.port = "443"
		}
	}
	info.url = scheme + host + r.URL.RequestURI()
	// The page's block is recorded as the transparent listener records
	// it there (the DNS answer's event is the name's, without the page,
	// and carries no reference): the reference on the page is the
	// stored event's, which IT can look up, and a request naming a site
	// the resolver never answered is recorded too. Repeats are collapsed
	// and quote the first's reference.
	s.blockPage(w, r, info, cfg, info.url, info.source()) // the event is durable before the page goes
}

// pac serves the proxy auto-config file.
func (s *Server) pac(w http.ResponseWriter, r *http.Request) {
	cfg := s.o.Config()
	addr := cfg.Proxy.PAC.ProxyAddress
	if addr == "" {
		host, _ := splitHostPort(r.Host)
		if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
			host = "[" + host + "]"
		}
		if host == "" {
			host = "127.0.0.1"
		}
		addr = host + ":" + s.listenPort
	}
	w.Header().Set("Content-Type", "application/x-ns-proxy-autoconfig")
	w.Header().Set("Cache-Control", "max-age=300")
	_, _ = w.Write([]byte(PAC(addr, cfg.Proxy.PAC.Direct)))
}

// PAC builds a proxy auto-config script: plain host names, localhost and
// the direct domains (with their subdomains) go DIRECT, everything else
// through the proxy at addr. There is no DIRECT fallback: if the proxy is
// down, browsing stops rather than going unfiltered.
func PAC(addr string, direct []string) string {
	var b strings.Builder
	b.WriteString("// Gatehouse web filter: proxy auto-config\n")
	b.WriteString("function FindProxyForURL(url, host) {\n")
	b.WriteString("  host = host.toLowerCase();\n")
	b.WriteString("  if (isPlainHostName(host) || host == \"localhost\" || host == \"127.0.0.1\" || host == \"::1\") return \"DIRECT\";\n")
	for _, d := range direct {
		d = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(d), "*."))
		q, _ := json.Marshal(d)
		qd, _ := json.Marshal("." + d)
		fmt.Fprintf(&b, "  if (host == %s || dnsDomainIs(host, %s)) return \"DIRECT\";\n", q, qd)
	}
	q, _ := json.Marshal("PROXY " + addr)
	fmt.Fprintf(&b, "  return %s;\n}\n", q)
	return b.String()
}

// mistakeReports rate-limits "report a mistake" forms per client
// address. The forms themselves go to the breach store (reports), which
// keeps them, mails them to IT and lists them in IT's digest. At most max
// addresses are counted (mistakeAddrsMax).
type mistakeReports struct {
	now   func() time.Time
	mu    sync.Mutex
	hits  map[netip.Addr][]time.Time
	max   int
	swept time.Time  // the last sweep of addresses quiet for an hour
	key   *reportKey // the forms' tokens (reportform.go)
}

// mistakeAddrsMax bounds the addresses whose reports are counted (each
// holds at most reports_per_hour times of 24 bytes: about 3 MiB in all
// with the default 10, about 240 MiB at the largest setting, 1,000). Many source addresses (an IPv6 device's can be any in its /64)
// must not grow it without limit. At the bound, addresses quiet for an
// hour are swept (at most once a second), else one address's count is
// forgotten at random: it may send its hour's reports again, and no
// other address is refused for the flood.
const mistakeAddrsMax = 10_000

func newMistakeReports(now func() time.Time) *mistakeReports {
	return &mistakeReports{now: now, hits: map[netip.Addr][]time.Time{}, max: mistakeAddrsMax, key: newReportKey()}
}

// allow takes one report from ip if it is under perHour.
func (m *mistakeReports) allow(ip netip.Addr, perHour int) bool {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.hits[ip]; !ok {
		maproom.SweepAndMake(m.hits, m.max, &m.swept, now, func(v []time.Time) bool {
			return len(v) == 0 || now.Sub(v[len(v)-1]) > time.Hour
		})
	}
	kept := m.hits[ip][:0]
	for _, t := range m.hits[ip] {
		if now.Sub(t) < time.Hour {
			kept = append(kept, t)
		}
	}
	if len(kept) >= perHour {
		m.hits[ip] = kept
		return false
	}
	m.hits[ip] = append(kept, now)
	return true
}

// reportedSite reads the address a "report a mistake" form names: an
// http or https URL ("//host/path" too, as http), as the block page sends
// it (cut at 200 bytes, perhaps inside an escape). It returns the
// normalised host and the rest as sent (policy.Engine.Decide makes it
// canonical), and false for anything else.
func reportedSite(raw string) (host, path string, ok bool) {
	s := raw
	if strings.HasPrefix(s, "//") {
		s = "http:" + s
	}
	i := strings.Index(s, "://")
	if i < 0 || !(strings.EqualFold(s[:i], "http") || strings.EqualFold(s[:i], "https")) {
		return "", "", false
	}
	host, path, err := bl.NormalizeSite(s)
	return host, path, err == nil
}

// handleReport takes a "report a mistake" form.
func (s *Server) handleReport(w http.ResponseWriter, r *http.Request, ip netip.Addr) {
	cfg := s.o.Config()
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		s.writePage(w, http.StatusBadRequest, pageData{School: cfg.School.Name, Message: "The report could not be read"})
		return
	}
	why := strings.TrimSpace(r.PostForm.Get("why"))
	ref := r.PostForm.Get("ref")
	if len(ref) > 20 || !validRef(ref) {
		ref = ""
	}
	rawURL := truncate(strings.TrimSpace(r.PostForm.Get("url")), 2000)
	if why == "" || rawURL == "" {
		s.writePage(w, http.StatusBadRequest, pageData{School: cfg.School.Name, Message: "Please say why you need the site"})
		return
	}
	// Only the form of a block page shown to this address, as that page
	// sent it (reportform.go): no other site's page can post one in the
	// pupil's name, nor use up the pupil's reports for the hour.
	if ref == "" || !s.reports.key.valid(ip, ref, r.PostForm.Get("url"), r.PostForm.Get("category"), r.PostForm.Get("t")) {
		s.writePage(w, http.StatusForbidden, pageData{School: cfg.School.Name,
			Message: "This report was not sent: please open the blocked page again and use the form on it", Contact: cfg.Proxy.BlockPage.Contact})
		return
	}
	if !s.reports.allow(ip, cfg.Proxy.BlockPage.ReportsPerHour) {
		w.Header().Set("Retry-After", "3600")
		s.writePage(w, http.StatusTooManyRequests, pageData{School: cfg.School.Name, Message: "You have sent a lot of reports. Please try again later or speak to IT"})
		return
	}
	user := s.logins.UserFor(ip)
	eng := s.o.Engine()
	req, who := s.whoRequest(ip, user, "")
	id := eng.IdentifyRequest(req)
	host, path, ok := reportedSite(rawURL)
	if !ok {
		// The block page's form always sends the page's full address; a
		// hand-made one that cannot be read is not stored (it could name
		// a restricted-tier site that the lists cannot then recognise).
		s.writePage(w, http.StatusBadRequest, pageData{School: cfg.School.Name, Message: "The report could not be read"})
		return
	}
	cat := r.PostForm.Get("category")
	if _, err := bl.ParseCategory(cat); err != nil {
		cat = ""
	}
	ev := reports.Event{
		Time: s.now().UTC(), Source: "http", Protocol: "http", Client: ip, Device: id.Device, User: req.User, Group: id.Group,
		Name: host, URL: rawURL, Method: http.MethodPost, Action: reports.ActionReport, Reason: "mistake-report", Category: cat,
		Severity: bl.SeverityLow, Route: bl.RouteIT, Ref: ref, Note: truncate(why, 1000), Count: 1,
	}
	// A report about a restricted-tier site (only a hand-made form can
	// send one: that block page has no form) is recorded by the list and
	// the entry's hash; the store never sees the address or the note.
	ev.IDSource = identity.Describe(&ev, who)
	req.Host, req.Path = host, path
	if d := eng.Decide(req); d.Restricted {
		ev.Restricted, ev.Category, ev.Entry = true, d.Category.String(), d.EntryHash()
	}
	reports.Redact(&ev)
	// Straight to the store, not through the collapsing event log: every
	// report counts, and the page says it was recorded only once it is
	// (durable, with the breach store: a crash after the page must not
	// forget it).
	if !recordDurable(s.o.Sink, ev) {
		s.log.Error("proxy: a mistake report could not be stored", "ref", ref, "client", ip.String())
		s.writePage(w, http.StatusServiceUnavailable, pageData{School: cfg.School.Name,
			Message: "Sorry: your report could not be sent. Please tell IT and quote the reference", Ref: ref, Contact: cfg.Proxy.BlockPage.Contact})
		return
	}
	s.metrics.reports.Inc()
	// The reference only: the report (who, which page, the note) is in the
	// store, kept as long as breaches; the log is kept by the system.
	s.log.Info("proxy: mistake report", "ref", ref, "client", ip.String())
	s.writePage(w, http.StatusOK, pageData{School: cfg.School.Name, Message: "Thank you: your report has been recorded for IT", Ref: ref,
		Sent: true, Mailed: reportMailed(cfg), Contact: cfg.Proxy.BlockPage.Contact})
}

// reportMailed is what the thank-you page says of when IT is mailed a
// report: never a promise the config does not keep. Reports are mailed
// only through an SMTP relay, to the it role or, without addresses, the
// role it falls back to (reports.ReportRoute), and at most once every
// reports.mistake_mail_every (batched).
func reportMailed(cfg *config.Config) string {
	r := cfg.Reports
	_, role := reports.ReportRoute(cfg, "", bl.RouteIT, false)
	if r.SMTP.Host == "" || len(r.Recipients[role]) == 0 {
		return ""
	}
	switch d := r.MistakeMailEvery.D(); {
	case d <= 0:
		return "within a few minutes"
	case d <= time.Minute:
		return "within a minute"
	case d < time.Hour:
		return fmt.Sprintf("within %d minutes", int((d+time.Minute-1)/time.Minute))
	case d == time.Hour:
		return "within an hour"
	case d < 24*time.Hour:
		return fmt.Sprintf("within %d hours", int((d+time.Hour-1)/time.Hour))
	}
	return "within a day"
}

// recordDurable hands ev to sink and reports whether it was taken; with
// a DurableSink (the breach store), whether it is durable once the store
// has committed or spilled it, or tried and failed to (then false: the
// database and the spill directory both fail, and nothing may say the
// event is recorded).
func recordDurable(sink reports.Sink, ev reports.Event) bool {
	if sink == nil {
		return false
	}
	ds, ok := sink.(reports.DurableSink)
	if !ok {
		return sink.Record(ev)
	}
	seq := ds.RecordSeq(ev)
	if seq == 0 {
		return false
	}
	reports.WaitDurable(ds, seq)
	return ds.IsDurable(seq)
}

func validRef(s string) bool {
	if !strings.HasPrefix(s, "GH-") {
		return false
	}
	for _, c := range s[3:] {
		if c != '-' && !strings.ContainsRune(refAlphabet, c) {
			return false
		}
	}
	return true
}
