package console

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gatehouse-filter/gatehouse/internal/browsertest"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// The console's end-to-end tests in Debian's chromium, driven by chromedp:
// real pages, real forms, real cookies (SameSite included) and the
// browser's own cross-origin headers. They are skipped, saying so, only
// when chromium is not installed (.ci/run installs it).

// browserProc is one headless chromium for a test; tabs made from it with
// newTab each have their own cookie jar (a separate browser context).
type browserProc struct {
	t    *testing.T
	root context.Context // the browser itself (its first, blank tab)
}

// newBrowser starts chromium with a fresh, empty profile.
func newBrowser(t *testing.T, extra ...chromedp.ExecAllocatorOption) *browserProc {
	t.Helper()
	return &browserProc{t: t, root: browsertest.Start(t, extra...)}
}

// tab is one page in its own browser context (its own cookies).
type tab struct {
	t   *testing.T
	ctx context.Context
}

// newTab opens a tab with a cookie jar of its own.
func (b *browserProc) newTab() *tab {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.root, chromedp.WithNewBrowserContext())
	b.t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		b.t.Fatalf("new tab: %v", err)
	}
	return &tab{t: b.t, ctx: ctx}
}

// open loads url and returns the HTTP status of the page shown.
func (tb *tab) open(url string) int64 {
	tb.t.Helper()
	resp, err := chromedp.RunResponse(tb.ctx, chromedp.Navigate(url))
	if err != nil {
		tb.t.Fatalf("open %s: %v", url, err)
	}
	tb.settle()
	return resp.Status
}

// settle waits (a bounded number of looks) while the page shown is one
// that moves on by itself (a meta refresh) until the page it goes to has
// loaded.
func (tb *tab) settle() {
	tb.t.Helper()
	for range 200 {
		moving, err := chromedp.Run(tb.ctx, chromedp.Evaluate[bool](
			`document.readyState !== "complete" || document.querySelector('meta[http-equiv="refresh"]') !== null`))
		if err == nil && !moving {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	tb.t.Fatalf("the page at %s did not settle:\n%s", tb.path(), tb.text())
}

// click clicks sel (a link or a form's button) and waits for the page it
// leads to; it returns that page's HTTP status.
func (tb *tab) click(sel string) int64 {
	tb.t.Helper()
	resp, err := chromedp.RunResponse(tb.ctx, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
	if err != nil {
		tb.t.Fatalf("click %s at %s: %v\n%s", sel, tb.path(), err, tb.text())
	}
	tb.settle()
	return resp.Status
}

// fill types v into the field sel (after clearing it).
func (tb *tab) fill(sel, v string) {
	tb.t.Helper()
	if err := chromedp.Do(tb.ctx, chromedp.SetValue(chromedp.CSS(sel), v, chromedp.NodeVisible)); err != nil {
		tb.t.Fatalf("fill %s at %s: %v\n%s", sel, tb.path(), err, tb.text())
	}
}

// choose picks the option with value v in the select sel.
func (tb *tab) choose(sel, v string) {
	tb.t.Helper()
	if err := chromedp.Do(tb.ctx, chromedp.SetValue(chromedp.CSS(sel), v, chromedp.NodeVisible)); err != nil {
		tb.t.Fatalf("choose %s: %v", sel, err)
	}
}

// eval runs a script in the page.
func evalIn[T any](tb *tab, js string, opts ...chromedp.EvaluateOption) T {
	tb.t.Helper()
	v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[T](js, opts...))
	if err != nil {
		tb.t.Fatalf("evaluate at %s: %v", tb.path(), err)
	}
	return v
}

// text is what the page says (its rendered text).
func (tb *tab) text() string {
	v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if err != nil {
		return "(no text: " + err.Error() + ")"
	}
	return v
}

// path is the page's path and query.
func (tb *tab) path() string {
	v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[string](`location.pathname + location.search`))
	if err != nil {
		return "(unknown: " + err.Error() + ")"
	}
	return v
}

// wantAt checks the page is at path (before any query) and says want.
func (tb *tab) wantAt(path string, want ...string) {
	tb.t.Helper()
	p, text := tb.path(), tb.text()
	if at, _, _ := strings.Cut(p, "?"); at != path {
		tb.t.Fatalf("at %s, want %s:\n%s", p, path, text)
	}
	for _, w := range want {
		if !strings.Contains(text, w) {
			tb.t.Fatalf("page %s does not say %q:\n%s", p, w, text)
		}
	}
}

// signIn fills the sign-in form on the page shown (the sign-in page) and,
// when secret is set, the code form with the code for the rig's clock.
func (tb *tab) signIn(r *rig, email, password, secret string) {
	tb.t.Helper()
	tb.wantAt("/signin")
	tb.fill("#email", email)
	tb.fill("#password", password)
	tb.click(`form[action="/signin"] button[type=submit]`)
	if secret == "" {
		return
	}
	tb.wantAt("/signin/code", "6-digit code")
	code, err := TOTPCode(secret, r.clock.Now())
	if err != nil {
		tb.t.Fatal(err)
	}
	tb.fill("#code", code)
	tb.click(`form[action="/signin/code"] button[type=submit]`)
}

// otherSite is a page on another site (localhost, where the console is
// on 127.0.0.1: a different site to the browser, as webmail is) serving
// body.
func otherSite(t *testing.T, body func(r *http.Request) string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, body(r))
	}))
	t.Cleanup(srv.Close)
	return strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
}

// webmail is a page on another site showing a mail with link in it.
func webmail(t *testing.T, link string) string {
	return otherSite(t, func(*http.Request) string {
		return `<!doctype html><html lang="en"><title>Webmail</title><h1>Inbox</h1><p>Gatehouse alert. <a id="open" href="` + link + `">Open the incident</a></p></html>`
	})
}

// shots is where screenshots go: $GATEHOUSE_SCREENSHOTS, or the test's
// temporary directory.
func shotsDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("GATEHOUSE_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("GATEHOUSE_SCREENSHOTS: %v", err)
		}
		return d
	}
	return t.TempDir()
}

// viewports are the widths pages are checked and shown at: a phone
// (375x812, the narrowest common one: iPhone SE, mini and X) and a laptop
// (1366x768).
var viewports = []struct {
	label string
	w, h  int64
	opts  []chromedp.EmulateViewportOption
}{
	{"laptop", 1366, 768, nil},
	{"phone", 375, 812, []chromedp.EmulateViewportOption{chromedp.EmulateMobile, chromedp.EmulatePortrait}},
}

// screenshot saves the whole page as dir/name.png.
func (tb *tab) screenshot(dir, name string) {
	tb.t.Helper()
	png, err := chromedp.Run(tb.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		tb.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		tb.t.Fatal(err)
	}
}

// fitsPhone checks, at phone width, that the page is read without
// scrolling sideways: the page is no wider than the screen
// (document.scrollingElement.scrollWidth <= clientWidth) and nothing in it
// (a table above all) scrolls sideways inside itself; every caption is on
// the screen.
func (tb *tab) fitsPhone(name string) {
	tb.t.Helper()
	bad := evalIn[[]string](tb, `(() => {
		const out = [], doc = document.scrollingElement, w = doc.clientWidth;
		if (doc.scrollWidth > doc.clientWidth) {
			let widest = null;
			for (const el of document.body.querySelectorAll("*")) {
				const r = el.getBoundingClientRect();
				if (r.right > w && el.children.length === 0) { widest = el; break; }
			}
			out.push("page is " + doc.scrollWidth + "px wide in a " + doc.clientWidth + "px screen" + (widest ? ": " + widest.outerHTML.slice(0, 200) : ""));
		}
		for (const el of document.body.querySelectorAll("*")) {
			const ox = getComputedStyle(el).overflowX;
			if ((ox === "auto" || ox === "scroll") && el.scrollWidth > el.clientWidth + 1) {
				out.push("<" + el.tagName.toLowerCase() + (el.className ? " class=" + el.className : "") + "> scrolls sideways (" + el.scrollWidth + "px in " + el.clientWidth + "px): " + el.textContent.trim().slice(0, 80));
			}
		}
		for (const c of document.querySelectorAll("caption")) {
			if (c.getBoundingClientRect().right > w + 1) out.push("caption runs off the screen: " + c.textContent.trim());
		}
		// A table shown as cards: every value's text is right of its label.
		for (const cell of document.querySelectorAll("table.cards td, table.cards tbody th")) {
			const cs = getComputedStyle(cell);
			if (cs.display !== "block") continue;
			const min = cell.getBoundingClientRect().left + parseFloat(cs.paddingLeft) - 1;
			const walk = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
			for (let n; (n = walk.nextNode());) {
				if (!n.textContent.trim()) continue;
				const r = document.createRange();
				r.selectNodeContents(n);
				if ([...r.getClientRects()].some(b => b.left < min)) {
					out.push("text over its label " + cell.dataset.label + ": " + n.textContent.trim().slice(0, 60));
					break;
				}
			}
		}
		return out;
	})()`)
	for _, b := range bad {
		tb.t.Errorf("%s at %dpx: %s", name, evalIn[int](tb, "document.scrollingElement.clientWidth"), b)
	}
}

// axeViolation is one of axe's findings.
type axeViolation struct {
	ID     string `json:"id"`
	Impact string `json:"impact"`
	Help   string `json:"help"`
	Nodes  []struct {
		Target []any  `json:"target"`
		HTML   string `json:"html"`
	} `json:"nodes"`
}

// accessible runs axe-core in the page and fails the test on serious or
// critical violations (WCAG 2.2 A/AA and best practice).
func (tb *tab) accessible(src, name string) {
	tb.t.Helper()
	if _, err := chromedp.Run(tb.ctx, chromedp.Evaluate[bool](src+";true")); err != nil {
		tb.t.Fatalf("injecting axe-core into %s: %v", name, err)
	}
	if v := evalIn[string](tb, "axe.version"); v != browsertest.AxeVersion {
		tb.t.Fatalf("axe-core %s was loaded; the test pins %s (GATEHOUSE_AXE, .ci/run's AXE_VERSION)", v, browsertest.AxeVersion)
	}
	vs := evalIn[[]axeViolation](tb, `axe.run(document, {resultTypes: ["violations"]}).then(r => r.violations)`, chromedp.EvalAwaitPromise)
	for _, v := range vs {
		if v.Impact != "serious" && v.Impact != "critical" {
			continue
		}
		var where []string
		for _, n := range v.Nodes {
			where = append(where, fmt.Sprint(n.Target)+" "+n.HTML)
		}
		tb.t.Errorf("%s (%s, %dpx wide): %s violation %s: %s\n  %s", name, tb.path(), evalIn[int](tb, "window.innerWidth"), v.Impact, v.ID, v.Help, strings.Join(where, "\n  "))
	}
}

// download saves what path answers to the signed-in client c in a file
// and returns its file:// URL, for opening as a downloaded file is.
func (r *rig) download(c *http.Client, path string) string {
	r.t.Helper()
	p := r.get(c, path)
	if p.status != http.StatusOK {
		r.t.Fatalf("download %s: %d\n%s", path, p.status, p.body)
	}
	_, name, _ := strings.Cut(p.header.Get("Content-Disposition"), `filename="`)
	name = strings.TrimSuffix(name, `"`)
	if name == "" || strings.ContainsAny(name, "/\\") {
		r.t.Fatalf("download %s: file name %q", path, name)
	}
	f := filepath.Join(r.t.TempDir(), name)
	if err := os.WriteFile(f, []byte(p.body), 0o600); err != nil {
		r.t.Fatal(err)
	}
	return "file://" + f
}

// checkPage runs axe (src; none when "") at laptop and phone widths,
// checks the page fits a phone and, when shot, saves screenshots at both
// widths in shots.
func (tb *tab) checkPage(src, shots, name string, shot bool) {
	tb.t.Helper()
	for _, v := range viewports {
		if err := chromedp.Do(tb.ctx, chromedp.EmulateViewport(v.w, v.h, v.opts...)); err != nil {
			tb.t.Fatalf("viewport %s: %v", v.label, err)
		}
		if src != "" {
			tb.accessible(src, name+" ("+v.label+")")
		}
		if v.label == "phone" {
			tb.fitsPhone(name)
		}
		if shot {
			tb.screenshot(shots, name+"-"+v.label)
		}
	}
}

// browserRig is a console with the incident and IT pages, an SMTP sink
// for its alert mail and a chromium.
type browserRig struct {
	*rig
	filter  *filter
	sink    *smtpSink
	mailer  *reports.Mailer
	alerter *reports.Alerter
	b       *browserProc
}

func newBrowserRig(t *testing.T, opt func(*Options), extra ...chromedp.ExecAllocatorOption) *browserRig {
	t.Helper()
	browsertest.Chromium(t) // skip before building anything
	r, f := newITRig(t, func(o *Options) {
		o.Cases = o.Incidents.(*reports.Store)
		if opt != nil {
			opt(o)
		}
	})
	br := &browserRig{rig: r, filter: f, sink: newSMTPSink(t)}
	br.mailer = reports.NewMailer(r.rep, reports.MailConfig{Host: "127.0.0.1", Port: br.sink.port, From: "gatehouse@school.example", TLS: "none",
		Timeout: 5 * time.Second, Dir: t.TempDir()}, nil, r.clock.Now)
	br.alerter = reports.NewAlerter(r.rep, reports.Options{Now: r.clock.Now, ConsoleURL: r.http.URL + "/"}, reports.Roles{"dsl": {"dsl@school.example"}},
		"Test Primary", nil, br.mailer)
	br.b = newBrowser(t, extra...)
	return br
}

// alert records a blocked attempt with the real writer, runs the alerter
// and delivers its mail over SMTP; it returns the link in the mail.
func (br *browserRig) alert(e reports.Event) string {
	br.t.Helper()
	before := len(br.sink.messages())
	record(br.t, br.writer(), e)
	if n, err := br.alerter.Check(context.Background()); err != nil || n != 1 {
		br.t.Fatalf("alerts queued: %d %v", n, err)
	}
	if _, err := br.mailer.DeliverDue(context.Background()); err != nil {
		br.t.Fatal(err)
	}
	msgs := br.sink.messages()
	if len(msgs) != before+1 {
		br.t.Fatalf("%d mails delivered, want %d", len(msgs), before+1)
	}
	text := readable(br.t.(*testing.T), msgs[len(msgs)-1])
	link := regexp.MustCompile(`http://127\.0\.0\.1:\d+/incidents/\d+`).FindString(text)
	if link == "" {
		br.t.Fatalf("no incident link in the mail:\n%s", text)
	}
	return link
}

// TestBrowserAlertLinkNoteCloseAudit: a DSL follows an alert mail's link
// from webmail, signs in with password and authenticator code, lands on
// the incident, adds a note, closes it with an outcome and sees both in
// the audit log; a repeat attempt reopens it and alerts again.
func TestBrowserAlertLinkNoteCloseAudit(t *testing.T) {
	br := newBrowserRig(t, nil)
	link := br.alert(block(br.clock.Now(), "10.0.0.5", "alice", "", "year9", "self-harm", "harm.example", "", "how to hurt myself"))
	id := br.incidentID("user:alice", "self-harm")
	if !strings.HasSuffix(link, "/incidents/"+itoa(id)) {
		t.Fatalf("mail links to %s, want incident %d", link, id)
	}
	secret := br.add("dsl@school.example", RoleDSL, goodPass, true)
	tb := br.b.newTab()

	// The link grants nothing: it asks for sign-in first.
	tb.open(webmail(t, link))
	tb.click("#open")
	tb.wantAt("/signin", "Sign in")
	if strings.Contains(tb.text(), "alice") {
		t.Fatalf("the link showed the pupil before sign-in:\n%s", tb.text())
	}
	tb.signIn(br.rig, "dsl@school.example", goodPass, secret)
	tb.wantAt("/incidents/"+itoa(id), "Incident #"+itoa(id), "alice", "how to hurt myself")

	// A note, then closed with an outcome.
	tb.fill("#note", "Spoke to Alice with her form tutor; she is safe.")
	tb.click(`form[action$="/note"] button[type=submit]`)
	tb.wantAt("/incidents/"+itoa(id), "Spoke to Alice with her form tutor; she is safe.")
	tb.choose("#outcome", "spoken to pupil")
	tb.click(`form[action$="/state"] button[type=submit]`)
	tb.wantAt("/incidents/"+itoa(id), "Status: closed", "outcome: spoken to pupil")

	// The audit log shows the look, the note and the close.
	tb.click(`a[href="/audit"]`)
	tb.wantAt("/audit", "incident.note", "incident.status", "incident:"+itoa(id))
	audit := tb.text()
	for _, want := range []string{"signin", "view", "incident.note", "incident.status"} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit page lacks %s:\n%s", want, audit)
		}
	}

	// A repeat attempt reopens the incident and alerts again.
	br.clock.Add(5 * time.Minute)
	link2 := br.alert(block(br.clock.Now(), "10.0.0.5", "alice", "", "year9", "self-harm", "harm.example", "", "how to hurt myself again"))
	if link2 != link {
		t.Errorf("the repeat alert links to %s, want the same incident %s", link2, link)
	}
	tb.open(link)
	tb.wantAt("/incidents/"+itoa(id), "Status: open (reopened after it was closed)", "how to hurt myself again")
}

// TestBrowserLinkFromWebmailWhileSignedIn: a signed-in DSL who follows an
// alert link from webmail (a navigation from another site, which does not
// carry a SameSite=Strict cookie) lands on the incident without signing
// in again.
func TestBrowserLinkFromWebmailWhileSignedIn(t *testing.T) {
	br := newBrowserRig(t, nil)
	link := br.alert(block(br.clock.Now(), "10.0.0.5", "alice", "", "year9", "self-harm", "harm.example", "", "how to hurt myself"))
	id := br.incidentID("user:alice", "self-harm")
	secret := br.add("dsl@school.example", RoleDSL, goodPass, true)
	tb := br.b.newTab()
	tb.open(br.http.URL + "/signin")
	tb.signIn(br.rig, "dsl@school.example", goodPass, secret)
	tb.wantAt("/", "Designated Safeguarding Lead")

	tb.open(webmail(t, link))
	tb.click("#open")
	tb.wantAt("/incidents/"+itoa(id), "Incident #"+itoa(id), "how to hurt myself")

	// Signed out, the same link still asks for sign-in.
	tb.click(`form[action="/signout"] button`)
	tb.open(webmail(t, link))
	tb.click("#open")
	tb.wantAt("/signin")
}

// TestBrowserIdleTimeout: after the idle limit without a request the next
// page asks for sign-in again and says why.
func TestBrowserIdleTimeout(t *testing.T) {
	br := newBrowserRig(t, nil)
	secret := br.add("dsl@school.example", RoleDSL, goodPass, true)
	tb := br.b.newTab()
	tb.open(br.http.URL + "/")
	tb.signIn(br.rig, "dsl@school.example", goodPass, secret)
	tb.wantAt("/", "Designated Safeguarding Lead")
	br.clock.Add(DefaultIdle - time.Minute)
	tb.click(`a[href="/incidents"]`)
	tb.wantAt("/incidents") // activity within the limit keeps the session
	br.clock.Add(DefaultIdle + time.Second)
	tb.click(`a[href="/"]`)
	tb.wantAt("/signin", "signed out after 15 minutes without activity")
	if e := br.lastAudit(); e.Action != "session.expired" || e.Detail != "idle" {
		t.Errorf("expiry audited as %+v", e)
	}
}

// TestBrowserCrossOriginPostRefused: a form on another site that posts to
// the console (with a signed-in DSL's browser) is refused and changes
// nothing.
func TestBrowserCrossOriginPostRefused(t *testing.T) {
	br := newBrowserRig(t, nil)
	br.alert(block(br.clock.Now(), "10.0.0.5", "alice", "", "year9", "self-harm", "harm.example", "", "how to hurt myself"))
	id := br.incidentID("user:alice", "self-harm")
	secret := br.add("dsl@school.example", RoleDSL, goodPass, true)
	tb := br.b.newTab()
	tb.open(br.http.URL + "/signin")
	tb.signIn(br.rig, "dsl@school.example", goodPass, secret)
	tb.wantAt("/")
	evil := otherSite(t, func(*http.Request) string {
		return `<!doctype html><html lang="en"><title>Prize</title><form method="post" action="` + br.http.URL + `/incidents/` + itoa(id) + `/state">
<input type="hidden" name="state" value="closed"><input type="hidden" name="outcome" value="no further action">
<input type="hidden" name="csrf" value="guess"><button id="go" type="submit">Claim your prize</button></form></html>`
	})
	tb.open(evil)
	if st := tb.click("#go"); st != http.StatusForbidden {
		t.Errorf("cross-origin POST answered %d, want 403", st)
	}
	if txt := tb.text(); !strings.Contains(txt, "sent from another site, so it was refused") {
		t.Errorf("refusal page:\n%s", txt)
	}
	c, err := br.rep.Case(id)
	if err != nil || c.State() != reports.CaseOpen {
		t.Fatalf("incident after the cross-origin POST: %+v %v", c.State(), err)
	}
}

// TestBrowserITCannotOpenIncident: an IT account sees counts, but an
// incident's page (even by its link) is refused and the attempt audited.
func TestBrowserITCannotOpenIncident(t *testing.T) {
	br := newBrowserRig(t, nil)
	link := br.alert(block(br.clock.Now(), "10.0.0.5", "alice", "", "year9", "self-harm", "harm.example", "", "how to hurt myself"))
	id := br.incidentID("user:alice", "self-harm")
	secret := br.add("it@school.example", RoleIT, goodPass, true)
	tb := br.b.newTab()
	tb.open(link)
	tb.signIn(br.rig, "it@school.example", goodPass, secret)
	tb.wantAt("/incidents/"+itoa(id), "Not for this account")
	if txt := tb.text(); strings.Contains(txt, "alice") || strings.Contains(txt, "hurt") {
		t.Fatalf("IT saw the incident:\n%s", txt)
	}
	if e := br.lastAudit(); e.Action != "denied" || e.Target != "incident:"+itoa(id) || e.Actor != "it@school.example" {
		t.Errorf("refusal audited as %+v", e)
	}
}

// TestBrowserPagesAccessible runs axe-core on every console page a DSL, IT
// and an auditor reach (no serious or critical violation) and saves the
// main pages at phone and laptop widths as PNG to $GATEHOUSE_SCREENSHOTS
// (default: the test's temporary directory).
func TestBrowserPagesAccessible(t *testing.T) {
	src, skip, err := browsertest.AxeSource()
	if err != nil {
		t.Fatal(err)
	}
	if skip != "" {
		t.Skip(skip)
	}
	br := newBrowserRig(t, func(o *Options) { o.FullLog = func() bool { return true } })
	shots := shotsDir(t)
	pupil, iwf, _ := br.seed()
	recordMistakes(t, br.rep, reports.Event{Time: start, Client: netip.MustParseAddr("10.1.2.3"), Group: "students",
		Name: "bet.example", URL: "http://bet.example/odds", Category: "gambling", Ref: "GH-AAAA-1111", Note: "maths homework on probability"})
	dslSecret := br.add("dsl@school.example", RoleDSL, goodPass, true)
	itSecret := br.add("it@school.example", RoleIT, goodPass, true)
	br.add("auditor@school.example", RoleAuditor, goodPass, false)
	check := func(tb *tab, name string, shot bool) {
		t.Helper()
		tb.checkPage(src, shots, name, shot)
	}

	// The DSL.
	tb := br.b.newTab()
	tb.open(br.http.URL + "/signin")
	check(tb, "signin", true)
	tb.fill("#email", "dsl@school.example")
	tb.fill("#password", "not the password")
	tb.click(`form[action="/signin"] button[type=submit]`)
	tb.wantAt("/signin", "do not match")
	check(tb, "signin-error", false)
	tb.fill("#email", "dsl@school.example")
	tb.fill("#password", goodPass)
	tb.click(`form[action="/signin"] button[type=submit]`)
	tb.wantAt("/signin/code")
	check(tb, "code", false)
	code, _ := TOTPCode(dslSecret, br.clock.Now())
	tb.fill("#code", code)
	tb.click(`form[action="/signin/code"] button[type=submit]`)
	tb.wantAt("/", "Designated Safeguarding Lead")
	check(tb, "home", true)
	tb.open(br.http.URL + "/incidents?period=today")
	check(tb, "incidents", true)
	tb.open(br.http.URL + "/incidents/" + itoa(pupil))
	tb.fill("#note", "Spoke to Alice.")
	tb.click(`form[action$="/note"] button[type=submit]`)
	check(tb, "incident", true)
	tb.open(br.http.URL + "/incidents/" + itoa(iwf))
	check(tb, "incident-restricted", false)
	// The evidence export is a file the DSL downloads and opens from disk.
	br.clock.Add(30 * time.Second) // a fresh code for a second sign-in
	dl := br.client()
	br.signIn(dl, "dsl@school.example", goodPass, dslSecret)
	for _, e := range []struct {
		id   int64
		name string
	}{{pupil, "evidence"}, {iwf, "evidence-restricted"}} {
		tb.open(br.download(dl, "/incidents/"+itoa(e.id)+"/evidence"))
		if txt := tb.text(); !strings.Contains(txt, "Evidence: incident #"+itoa(e.id)) {
			t.Fatalf("evidence file:\n%s", txt)
		}
		if bg := evalIn[string](tb, `getComputedStyle(document.querySelector("header")).backgroundColor`); bg != "rgb(11, 61, 92)" {
			t.Errorf("%s: the file opened from disk is not styled (header background %s)", e.name, bg)
		}
		check(tb, e.name, e.id == pupil)
	}
	tb.open(br.http.URL + "/history?who=user:alice")
	check(tb, "history", true)
	tb.open(br.http.URL + "/audit")
	check(tb, "audit", true)
	tb.open(br.http.URL + "/incidents/999999")
	check(tb, "message", false)
	tb.open(br.http.URL + "/account/password")
	tb.fill("#current", goodPass)
	tb.fill("#new", "password1234")
	tb.fill("#again", "password1234")
	tb.click(`form[action="/account/password"] button[type=submit]`)
	tb.wantAt("/account/password", "That password was refused")
	check(tb, "password", false)

	// IT.
	br.clock.Add(time.Minute)
	it := br.b.newTab()
	it.open(br.http.URL + "/")
	it.signIn(br.rig, "it@school.example", goodPass, itSecret)
	it.wantAt("/", "Mis-block queue")
	check(it, "home-it", false)
	it.open(br.http.URL + "/it/why")
	it.fill("#client", "10.1.2.3")
	it.fill("#target", "https://www.bet.example/page")
	it.click(`form[action="/it/why"] button[type=submit]`)
	it.wantAt("/it/why", "bets")
	check(it, "why-blocked", true)
	it.open(br.http.URL + "/it/lists")
	check(it, "allow-deny", false)
	// With an entry, the table of entries (a card with its Remove form on a
	// phone).
	it.choose("#group", "students")
	it.fill("#entry", "a-rather-long-site-name-for-a-phone.example/with/a/path")
	it.fill("#reason", "maths lesson on probability")
	it.click(`form[action="/it/lists"] button[type=submit]`)
	it.wantAt("/it/lists", "a-rather-long-site-name-for-a-phone.example/with/a/path")
	check(it, "allow-deny-entry", true)
	it.open(br.http.URL + "/it/queue")
	it.wantAt("/it/queue", "GH-AAAA-1111")
	check(it, "queue", true)
	it.open(br.http.URL + "/it/status")
	check(it, "status", true)

	// The auditor.
	au := br.b.newTab()
	au.open(br.http.URL + "/")
	au.signIn(br.rig, "auditor@school.example", goodPass, "")
	au.wantAt("/", "Auditor")
	check(au, "home-auditor", false)
	t.Logf("screenshots in %s", shots)
}

// TestBrowserWeakPasswordRefused: changing one's password in the console
// refuses a weak one and says which rule it broke and what to do; a good
// one is accepted and works at the next sign-in.
func TestBrowserWeakPasswordRefused(t *testing.T) {
	br := newBrowserRig(t, nil)
	secret := br.add("dsl@school.example", RoleDSL, goodPass, true)
	tb := br.b.newTab()
	tb.open(br.http.URL + "/")
	tb.signIn(br.rig, "dsl@school.example", goodPass, secret)
	tb.click(`a[href="/account/password"]`)
	tb.wantAt("/account/password", "Change your password")
	for _, c := range []struct{ pw, want string }{
		{"Summer2026!!!", `is a common word or pattern ("summer") with digits or symbols added`},
		{"short1!", "has 7 characters; use at least 12 (a passphrase of three or four unrelated words is easy to remember)"},
		{"dsl-password-dsl-2026", "contains the account name"},
		{"qwertyuiop[]", "is on the list of common passwords that attackers try first"},
	} {
		tb.fill("#current", goodPass)
		tb.fill("#new", c.pw)
		tb.fill("#again", c.pw)
		// The browser's own minlength check would stop a short one before
		// it is sent: the server's answer is what is tested here.
		evalIn[bool](tb, `document.querySelector("form[action='/account/password']").noValidate = true`)
		if st := tb.click(`form[action="/account/password"] button[type=submit]`); st != http.StatusBadRequest {
			t.Errorf("%q: status %d, want 400", c.pw, st)
		}
		tb.wantAt("/account/password", "That password was refused: it "+c.want)
	}
	tb.fill("#current", goodPass)
	tb.fill("#new", "lantern otter meadow brick")
	tb.fill("#again", "lantern otter meadow brick")
	tb.click(`form[action="/account/password"] button[type=submit]`)
	tb.wantAt("/account/password", "Password changed")
	if e := br.lastAudit(); e.Action != "account.passwd" || e.Actor != "dsl@school.example" {
		t.Errorf("change audited as %+v", e)
	}
	// Still signed in here; the new password works next time, the old not.
	tb.click(`a[href="/"]`)
	tb.wantAt("/", "Designated Safeguarding Lead")
	tb.click(`form[action="/signout"] button`)
	br.clock.Add(time.Minute)
	tb.open(br.http.URL + "/signin")
	tb.fill("#email", "dsl@school.example")
	tb.fill("#password", goodPass)
	tb.click(`form[action="/signin"] button[type=submit]`)
	tb.wantAt("/signin", "do not match")
	tb.signIn(br.rig, "dsl@school.example", "lantern otter meadow brick", secret)
	tb.wantAt("/", "Designated Safeguarding Lead")
}

// TestBrowserOIDCSignIn: "Sign in with Microsoft" against the OpenID
// provider in the test process (its HTTPS certificate trusted by its key's
// pin alone), then the authenticator code, in chromium.
func TestBrowserOIDCSignIn(t *testing.T) {
	browsertest.Chromium(t)
	r, p, _ := oidcRig(t, false)
	secret := r.add("it@school.example", RoleIT, goodPass, true)
	cert := p.Certificate()
	pin := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	b := newBrowser(t, chromedp.Flag("ignore-certificate-errors-spki-list", base64.StdEncoding.EncodeToString(pin[:])))
	p.set("IT@School.Example", "", "")
	tb := b.newTab()
	tb.open(r.http.URL + "/signin")
	tb.click(`form[action="/signin/oidc"] button[type=submit]`)
	tb.wantAt("/signin/code", "6-digit code")
	code, err := TOTPCode(secret, r.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	tb.fill("#code", code)
	tb.click(`form[action="/signin/code"] button[type=submit]`)
	tb.wantAt("/", "it@school.example (IT)")
	log, _ := r.st.AuditLog()
	if last := log[len(log)-1]; last.Action != "signin" || !strings.Contains(last.Detail, "oidc "+p.URL+" and code") {
		t.Errorf("sign-in audited as %+v", last)
	}

	// No console account: refused in the browser too, and none is made.
	p.set("newteacher@school.example", "", "")
	nb := b.newTab()
	nb.open(r.http.URL + "/signin")
	if st := nb.click(`form[action="/signin/oidc"] button[type=submit]`); st != http.StatusForbidden {
		t.Errorf("no account: status %d, want 403", st)
	}
	nb.wantAt("/signin/oidc/callback", "has no console account")
}
