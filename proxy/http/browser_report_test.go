package httpproxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gatehouse-filter/gatehouse/internal/browsertest"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// browserThroughProxy starts Debian's chromium (headless, a fresh
// profile) with e's proxy as its proxy, and returns its tab.
func browserThroughProxy(t *testing.T, e *env) context.Context {
	t.Helper()
	return browsertest.Start(t, chromedp.ProxyServer("http://"+e.addr))
}

// pageText is what the tab's page says.
func pageText(t *testing.T, ctx context.Context) string {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if err != nil {
		t.Fatalf("reading the page: %v", err)
	}
	return v
}

// reportEvents are the "report a mistake" forms the store has taken.
func reportEvents(s *sink) []reports.Event {
	var out []reports.Event
	for _, ev := range s.events() {
		if ev.Action == reports.ActionReport {
			out = append(out, ev)
		}
	}
	return out
}

// TestBrowserReportForgedByOtherSite: a page on any allowed site (a
// pupil's own, or one that pupils are sent a link to) cannot make a
// visitor's browser send "report a mistake" forms. The proxy answers the
// form's path on every site, so before, a page that posted there (a form
// it submits itself, or fetch in no-cors mode, which needs no preflight)
// had a report stored and mailed to IT in the name of every pupil who
// opened it, with a note and an address of its choosing. The report from
// a real block page still goes, in the same browser.
func TestBrowserReportForgedByOtherSite(t *testing.T) {
	e := newEnv(t, envOpts{})
	var evilPort string
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		// fetch() to its own address (same origin: no CORS at all), then a
		// form submitted to the blocked site's address (a cross-site POST
		// navigation, as a link in a chat would start).
		_, _ = io.WriteString(w, `<!DOCTYPE html><html lang="en"><head><title>Free games</title></head><body>
<p>Loading games…</p>
<form id="f" method="post" action="http://games.test:`+evilPort+`/.gatehouse/report">
<input type="hidden" name="url" value="http://games.test/">
<input type="hidden" name="category" value="games">
<input type="hidden" name="ref" value="GH-2222-2222">
<input type="hidden" name="why" value="forged: please unblock games (form)">
</form>
<script>
fetch("/.gatehouse/report", {method: "POST", mode: "no-cors",
  body: new URLSearchParams({url: "http://games.test/", category: "games", why: "forged: please unblock games (fetch)"})})
  .finally(function () { document.getElementById("f").submit(); });
</script></body></html>`)
	}))
	t.Cleanup(evil.Close)
	_, evilPort, _ = net.SplitHostPort(evil.Listener.Addr().String())
	e.allowPort(evilPort)
	e.res.mu.Lock()
	e.res.names["evil.test"] = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	e.res.mu.Unlock()

	ctx := browserThroughProxy(t, e)
	// The pupil opens the other site's page; it posts its forms and ends
	// on whatever the report's answer is.
	if _, err := chromedp.RunResponse(ctx, chromedp.Navigate("http://evil.test:"+evilPort+"/")); err != nil {
		t.Fatalf("opening the other site: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second) // returns as soon as the form's answer is shown
	for time.Now().Before(deadline) {
		if p := pageText(t, ctx); !strings.Contains(p, "Loading games") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	shown := pageText(t, ctx)
	if forged := reportEvents(e.sink); len(forged) > 0 {
		for _, ev := range forged {
			t.Errorf("a page on another site had a report stored in the pupil's name: client %s, url %q, note %q", ev.Client, ev.URL, ev.Note)
		}
	}
	if strings.Contains(shown, "has been recorded") {
		t.Errorf("the forged form was answered as recorded:\n%s", shown)
	}

	// The block page's own form, filled in and sent by the pupil: for an
	// address longer than the page shows (cut at 200 bytes), with
	// characters the page escapes.
	resp, err := chromedp.RunResponse(ctx, chromedp.Navigate(e.originURL("adult.test", "/page/"+strings.Repeat("é", 120)+`?q="x"&y=<z>`)))
	if err != nil || resp.Status != http.StatusForbidden {
		t.Fatalf("opening the blocked page: %v, %+v", err, resp)
	}
	ref, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('input[name=ref]').value`))
	if err != nil || ref == "" {
		t.Fatalf("the block page's reference: %q, %v\n%s", ref, err, pageText(t, ctx))
	}
	if err := chromedp.Do(ctx, chromedp.SetValue(chromedp.CSS("#why"), "It is a biology resource", chromedp.NodeVisible)); err != nil {
		t.Fatalf("filling in the form: %v", err)
	}
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`button[type=submit]`), chromedp.NodeVisible)); err != nil {
		t.Fatalf("sending the form: %v\n%s", err, pageText(t, ctx))
	}
	ev := e.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Action == reports.ActionReport && ev.Ref == ref })
	if ev.Note != "It is a biology resource" || !strings.HasPrefix(ev.URL, "http://adult.test:") || ev.Category != "pornography" {
		t.Errorf("the block page's report was stored as %+v", ev)
	}
	deadline = time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && !strings.Contains(pageText(t, ctx), "has been recorded") {
		time.Sleep(50 * time.Millisecond)
	}
	if p := pageText(t, ctx); !strings.Contains(p, "Thank you: your report has been recorded for IT") || !strings.Contains(p, ref) {
		t.Errorf("after the block page's form the pupil sees:\n%s", p)
	}
}
