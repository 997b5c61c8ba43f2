package httpproxy

import (
	"bytes"
	"compress/gzip"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/policy"
	"github.com/gatehouse-filter/gatehouse/reports"
	"github.com/gatehouse-filter/gatehouse/watchlist"
)

// Page texts for the content check (the starter self-harm list gives
// each distinct phrase a weight of 10; default thresholds: report 30,
// block 60).
const (
	harmful7 = "I want to die. I will kill myself. I want to end my life. Everyone is better off dead. Suicide. Self harm. I will hang myself."
	harmful4 = "I want to die. I will kill myself. I want to end my life. Everyone is better off dead."
	harmful1 = "A history of the suicide prevention movement in the UK." // prevention week is not said: 10
)

// contentEnv is a proxy env with a page origin reached as pages.test and
// chatgpt.com (an AI host) over plain HTTP.
type contentEnv struct {
	*env
	pages   *httptest.Server
	mux     *http.ServeMux
	lastAE  atomic.Value // the Accept-Encoding the origin last saw
	written atomic.Int64 // bytes /big has written
}

func newContentEnv(t testing.TB, extra string) *contentEnv {
	return newContentEnvOpts(t, envOpts{extra: extra})
}

func newContentEnvOpts(t testing.TB, opts envOpts) *contentEnv {
	ce := &contentEnv{env: newEnv(t, opts), mux: http.NewServeMux()}
	ce.pages = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ce.lastAE.Store(r.Header.Get("Accept-Encoding"))
		ce.mux.ServeHTTP(w, r)
	}))
	t.Cleanup(ce.pages.Close)
	_, port, _ := net.SplitHostPort(ce.pages.Listener.Addr().String())
	ce.allowPort(port)
	ce.res.mu.Lock()
	for _, h := range []string{"pages.test", "chatgpt.com", "www.childline.org.uk"} {
		ce.res.names[h] = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	}
	ce.res.mu.Unlock()
	return ce
}

func (ce *contentEnv) url(host, path string) string {
	_, port, _ := net.SplitHostPort(ce.pages.Listener.Addr().String())
	return "http://" + host + ":" + port + path
}

// page serves body under path with a content type, in pieces (each
// flushed: the proxy reads them as they come).
func (ce *contentEnv) page(path, ctype string, pieces ...string) {
	ce.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		if ctype != "" {
			w.Header().Set("Content-Type", ctype)
		} else {
			w.Header()["Content-Type"] = nil // no sniffing: no type at all
		}
		for _, p := range pieces {
			_, _ = io.WriteString(w, p)
			w.(http.Flusher).Flush()
		}
	})
}

func isContent(ev reports.Event) bool { return ev.Reason == "content" }

func (ce *contentEnv) contentEvents() []reports.Event {
	ce.s.events.flush(true)
	var out []reports.Event
	for _, ev := range ce.sink.events() {
		if isContent(ev) {
			out = append(out, ev)
		}
	}
	return out
}

const htmlHead = "<!DOCTYPE html><html><head><title>Page</title></head><body><div class=\"x\"><p>Welcome to the page about volcanoes.</p>"

// TestContentBlocked: an HTML page over the self-harm block threshold
// gets the block notice in place of its rest; the block event (reason
// content, critical, the phrases, the URL) is stored before the notice
// is written. A page between report and block is flagged and passes
// whole; one under both passes without an event.
func TestContentBlocked(t *testing.T) {
	ce := newContentEnv(t, "")
	ce.page("/bad", "text/html; charset=utf-8", htmlHead, "<p>"+harmful7+"</p>", "<p>THE END OF THE PAGE</p></div></body></html>")
	ce.page("/flag", "text/html", htmlHead, "<p>"+harmful4+"</p>", "</div></body></html>")
	ce.page("/fine", "text/html", htmlHead, "<p>"+harmful1+"</p>", "</div></body></html>")
	c := ce.client("", "", "")

	resp, body := get(t, c, ce.url("pages.test", "/bad"))
	if resp.StatusCode != 200 || !strings.Contains(body, "The rest of this page is blocked") || strings.Contains(body, "THE END OF THE PAGE") ||
		!strings.Contains(body, "self-harm and suicide") || !strings.Contains(body, "Childline") {
		t.Fatalf("blocked page: %d %q", resp.StatusCode, body)
	}
	if ae, _ := ce.lastAE.Load().(string); ae != "" {
		t.Errorf("the origin was asked for Accept-Encoding %q, want none (identity)", ae)
	}
	evs := ce.contentEvents()
	if len(evs) != 1 {
		t.Fatalf("content events %+v", evs)
	}
	ev := evs[0]
	if ev.Action != "block" || ev.Category != "self-harm" || ev.Severity != bl.SeverityCritical || ev.Route != bl.RouteDSL ||
		ev.URL != ce.url("pages.test", "/bad") || !strings.Contains(ev.Entry, "kill myself") || ev.List != "watchlist:self-harm" ||
		ev.Ref == "" || !strings.Contains(body, ev.Ref) || ev.Group != "students" {
		t.Errorf("block event %+v", ev)
	}

	resp, body = get(t, c, ce.url("pages.test", "/flag"))
	if resp.StatusCode != 200 || strings.Contains(body, "blocked") || !strings.HasSuffix(body, "</html>") {
		t.Fatalf("flagged page changed: %q", body)
	}
	evs = ce.contentEvents()
	if len(evs) != 2 || evs[1].Action != "flag" || evs[1].Category != "self-harm" || evs[1].Severity != bl.SeverityCritical ||
		!strings.Contains(evs[1].Entry, "end my life") || evs[1].URL != ce.url("pages.test", "/flag") {
		t.Fatalf("flag event %+v", evs)
	}

	_, body = get(t, c, ce.url("pages.test", "/fine"))
	if !strings.Contains(body, harmful1) || !strings.HasSuffix(body, "</html>") {
		t.Fatalf("page under the thresholds changed: %q", body)
	}
	if n := len(ce.contentEvents()); n != 2 {
		t.Errorf("%d content events after a page under the thresholds, want 2", n)
	}
	// A support service is never scored.
	ce.page("/help", "text/html", htmlHead, "<p>"+harmful7+"</p></body></html>")
	_, body = get(t, c, ce.url("www.childline.org.uk", "/help"))
	if !strings.Contains(body, harmful7) || len(ce.contentEvents()) != 2 {
		t.Errorf("exempt host scored: %q", body)
	}
}

// TestContentNoticeClosesOpenMarkup: when the piece that reaches the
// block threshold is held back and the client's parser was left inside a
// quoted attribute, a tag, a script or a comment, the notice is preceded
// by what closes it.
func TestContentNoticeClosesOpenMarkup(t *testing.T) {
	ce := newContentEnv(t, "")
	for _, tc := range []struct{ first, second, closer string }{
		{htmlHead + `<a title="half`, `way">`, `">`},
		{htmlHead + `<a title='half`, `way'>`, `'>`},
		{htmlHead + `<script>var a = "`, `";</script>`, `</script>`},
		{htmlHead + `<style>p{`, `}</style>`, `</style>`},
		{htmlHead + `<!-- note `, ` -->`, `-->`},
		{htmlHead + `<img src=x `, `>`, `>`},
		{htmlHead + `<p>open`, `</p>`, ``},
	} {
		cw, rec := ce.check(t, "text/html")
		if _, err := cw.Write([]byte(tc.first)); err != nil {
			t.Fatal(err)
		}
		_, err := cw.Write([]byte(tc.second + "<p>" + harmful7 + "</p></body></html>"))
		if !cw.finish() || err == nil {
			t.Fatalf("%q: not blocked", tc.first)
		}
		if body := rec.Body.String(); !strings.HasPrefix(body, tc.first+tc.closer+`<div id="gatehouse-block"`) {
			t.Errorf("%q: %q", tc.first, body)
		}
	}
}

// check is a content check of a students' GET, writing to a recorder.
func (ce *contentEnv) check(t *testing.T, ctype string) (*contentWriter, *httptest.ResponseRecorder) {
	rec := httptest.NewRecorder()
	rec.Header().Set("Content-Type", ctype)
	info := &reqInfo{client: netip.MustParseAddr("127.0.0.1"), host: "pages.test", dec: ce.eng.Load().Decide(policyReq("pages.test"))}
	r := httptest.NewRequest(http.MethodGet, "http://pages.test/page", nil)
	info.rw = respWriter{ResponseWriter: rec, status: 200}
	cw := ce.s.contentCheck(&info.rw, r, info, ce.cur.Load())
	if cw == nil {
		t.Fatal("no content check for students")
	}
	cw.WriteHeader(200)
	return cw, rec
}

// TestContentSplitAcrossWrites: a phrase split across two pieces of the
// body (at every offset; inside a word, an entity or a UTF-8 sequence)
// is found.
func TestContentSplitAcrossWrites(t *testing.T) {
	ce := newContentEnv(t, "")
	page := htmlHead + "<p>I w&#97;nt to d&iacute;e… " + harmful7 + "</p></div></body></html>"
	for cut := len(htmlHead); cut < len(page); cut++ {
		cw, _ := ce.check(t, "text/html")
		_, err1 := cw.Write([]byte(page[:cut]))
		_, err2 := cw.Write([]byte(page[cut:]))
		blocked := cw.finish()
		if !blocked || (err1 == nil && err2 == nil) {
			t.Fatalf("cut at %d: not blocked", cut)
		}
	}
	// Over the network, in two flushed writes, the second completing the
	// last phrase.
	half := strings.Index(harmful7, "hang my") + len("hang my")
	ce.page("/two", "text/html", htmlHead+"<p>"+harmful7[:half], harmful7[half:]+"</p><p>TAIL</p></body></html>")
	ce.editWatch(func(w *config.Watchlists) {
		w.Themes = map[string]config.WatchlistTheme{"self-harm": {ContentReport: 10, ContentBlock: 70}}
	})
	_, body := get(t, ce.client("", "", ""), ce.url("pages.test", "/two"))
	if !strings.Contains(body, "The rest of this page is blocked") || strings.Contains(body, "TAIL") {
		t.Errorf("split phrase missed: %q", body)
	}
}

// TestContentNotScored: script, style, comments and attributes are not
// text; images, binary and unknown types pass untouched (phrase bytes in
// them or not); staff are not checked; the restricted tier is not reached.
func TestContentNotScored(t *testing.T) {
	ce := newContentEnv(t, "")
	hidden := htmlHead + "<script>var s = '" + harmful7 + "';</script><style>/* " + harmful7 + " */</style><!-- " + harmful7 +
		" --><img alt=\"" + harmful7 + "\" title='" + harmful7 + "'><p>Lava is hot.</p></div></body></html>"
	ce.page("/hidden", "text/html", hidden)
	bin := append([]byte{0x89, 'P', 'N', 'G', 0, 0}, []byte(strings.Repeat(harmful7, 20))...)
	ce.page("/img", "image/png", string(bin))
	ce.page("/bin", "application/octet-stream", string(bin))
	ce.page("/none", "", string(bin))
	ce.page("/json", "application/json", `{"content":"`+harmful7+`"}`) // JSON of a site that is no AI chat service
	ce.page("/bad", "text/html", htmlHead+"<p>"+harmful7+"</p></body></html>")
	c := ce.client("", "", "")
	_, body := get(t, c, ce.url("pages.test", "/hidden"))
	if body != hidden {
		t.Errorf("page with hidden text changed: %q", body)
	}
	for _, p := range []string{"/img", "/bin", "/none", "/json"} {
		_, body := get(t, c, ce.url("pages.test", p))
		want := string(bin)
		if p == "/json" {
			want = `{"content":"` + harmful7 + `"}`
		}
		if body != want {
			t.Errorf("%s changed", p)
		}
	}
	// Staff (content_check off by default) get the page whole.
	staff := ce.client("127.0.0.2", "jsmith", password)
	_, body = get(t, staff, ce.url("pages.test", "/bad"))
	if strings.Contains(body, "blocked") || !strings.Contains(body, harmful7) {
		t.Errorf("staff page changed: %q", body)
	}
	if evs := ce.contentEvents(); len(evs) != 0 {
		t.Fatalf("content events %+v", evs)
	}
	// content_check: on for staff turns it on; off for students turns it off.
	ce.editGroup("staff", func(g *config.Group) { g.ContentCheck = "on" })
	ce.editGroup("students", func(g *config.Group) { g.ContentCheck = "off" })
	if _, body = get(t, staff, ce.url("pages.test", "/bad")); !strings.Contains(body, "The rest of this page is blocked") {
		t.Errorf("staff with content_check on: %q", body)
	}
	if _, body = get(t, c, ce.url("pages.test", "/bad")); !strings.Contains(body, harmful7) {
		t.Errorf("students with content_check off: %q", body)
	}
}

// TestContentCompression: a page or frame is asked for uncompressed; a
// request claiming to be for an image, a script or another site's fetch
// keeps gzip only (br, zstd and deflate dropped), and an HTML answer to it
// is still scored; a gzip answer of a scored type (asked for or not) is
// decompressed on its way, scored and sent without Content-Encoding;
// anything else compressed passes as it came.
func TestContentCompression(t *testing.T) {
	ce := newContentEnv(t, "")
	ce.page("/bad", "text/html", htmlHead+"<p>"+harmful7+"</p></body></html>")
	c := ce.client("", "", "")
	for _, dest := range []string{"image", "script", "empty"} {
		req, _ := http.NewRequest(http.MethodGet, ce.url("pages.test", "/bad?"+dest), nil)
		req.Header.Set("Sec-Fetch-Dest", dest)
		req.Header.Set("Accept-Encoding", "gzip, br, zstd")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if ae, _ := ce.lastAE.Load().(string); ae != "gzip" || !strings.Contains(string(b), "The rest of this page is blocked") {
			t.Errorf("Sec-Fetch-Dest %s: Accept-Encoding %q upstream, body %q", dest, ae, b)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, ce.url("pages.test", "/bad?br"), nil)
	req.Header.Set("Sec-Fetch-Dest", "image")
	req.Header.Set("Accept-Encoding", "br")
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
	}
	if ae, ok := ce.lastAE.Load().(string); !ok || ae != "" {
		t.Errorf("Accept-Encoding br only: %q upstream, want none", ae)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = io.WriteString(zw, htmlHead+"<p>"+harmful7+"</p><p>TAIL</p></body></html>")
	_ = zw.Close()
	for path, ctype := range map[string]string{"/gz": "text/html", "/gzbin": "application/octet-stream"} {
		ce.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ctype)
			w.Header().Set("Content-Encoding", "gzip")
			_, _ = w.Write(gz.Bytes())
		})
	}
	for _, dest := range []string{"", "image"} {
		req, _ := http.NewRequest(http.MethodGet, ce.url("pages.test", "/gz?"+dest), nil)
		req.Header.Set("Accept-Encoding", "gzip")
		req.Header.Set("Sec-Fetch-Dest", dest)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Header.Get("Content-Encoding") != "" || !strings.Contains(string(raw), "The rest of this page is blocked") || strings.Contains(string(raw), "TAIL") {
			t.Errorf("gzip page (dest %q): %v %q", dest, resp.Header, raw)
		}
	}
	req, _ = http.NewRequest(http.MethodGet, ce.url("pages.test", "/gzbin"), nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(raw, gz.Bytes()) || resp.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("compressed binary answer changed")
	}
	// Labelled gzip but not gzip: passed on whole, as it came.
	fake := htmlHead + "<p>" + harmful7 + "</p></body></html>"
	ce.mux.HandleFunc("/fakegz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Content-Encoding", "gzip")
		_, _ = io.WriteString(w, fake)
	})
	req, _ = http.NewRequest(http.MethodGet, ce.url("pages.test", "/fakegz"), nil)
	req.Header.Set("Accept-Encoding", "gzip")
	if resp, err = c.Do(req); err != nil {
		t.Fatal(err)
	}
	raw, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(raw) != fake {
		t.Errorf("mislabelled answer changed: %q", raw)
	}
	if n := len(ce.contentEvents()); n != 6 { // three dests, br, two gzip pages
		t.Errorf("%d content events, want 6", n)
	}
}

// TestContentAIChat: the JSON event stream of an AI chat service is
// scored on its text fields, tokens joined as they stream.
func TestContentAIChat(t *testing.T) {
	ce := newContentEnv(t, "")
	var pieces []string
	for _, tok := range strings.SplitAfter(harmful7, " ") {
		// Words cut into sub-word tokens, as models stream them.
		for len(tok) > 3 {
			pieces = append(pieces, `data: {"id":"c1","choices":[{"delta":{"content":"`+jsonEsc(tok[:3])+`"}}]}`+"\n\n")
			tok = tok[3:]
		}
		pieces = append(pieces, `data: {"id":"c1","choices":[{"delta":{"content":"`+jsonEsc(tok)+`"}}]}`+"\n\n")
	}
	pieces = append(pieces, "data: [DONE]\n\n")
	ce.page("/backend-api/conversation", "text/event-stream", pieces...)
	ce.page("/api/answer", "application/json", `{"message":{"role":"assistant","parts":["I want to d\u00ede. I will `+"kill myself"+`.\nI want to end my life."]}}`)
	req, _ := http.NewRequest(http.MethodPost, ce.url("chatgpt.com", "/backend-api/conversation"), strings.NewReader(`{"prompt":"hi"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := ce.client("", "", "").Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "web filter blocked the rest of this answer") || strings.Contains(string(body), "[DONE]") {
		t.Errorf("AI stream: %q", body)
	}
	evs := ce.contentEvents()
	if len(evs) != 1 || evs[0].Action != "block" || evs[0].Category != "self-harm" || evs[0].Method != http.MethodPost {
		t.Fatalf("events %+v", evs)
	}
	_, b := get(t, ce.client("", "", ""), ce.url("chatgpt.com", "/api/answer"))
	evs = ce.contentEvents()
	if len(evs) != 2 || evs[1].Action != "flag" || !strings.Contains(b, "end my life") {
		t.Fatalf("AI JSON answer: %q, events %+v", b, evs)
	}
}

func jsonEsc(s string) string { return strings.ReplaceAll(s, `"`, `\"`) }

// TestContentSizeCap: past proxy.content_check.max_bytes the rest passes
// unscored; a large body streams through without being held (the site
// cannot finish writing while the client does not read).
func TestContentSizeCap(t *testing.T) {
	ce := newContentEnv(t, "  content_check:\n    max_bytes: 4KiB\n")
	filler := "<p>" + strings.Repeat("Rocks and minerals. ", 300) + "</p>" // 6 KiB
	ce.page("/late", "text/html", htmlHead+filler, "<p>"+harmful7+"</p></body></html>")
	_, body := get(t, ce.client("", "", ""), ce.url("pages.test", "/late"))
	if !strings.Contains(body, harmful7) || len(ce.contentEvents()) != 0 {
		t.Errorf("phrases past the size cap were scored")
	}
	// Not silently: the answer cut off is counted, once.
	if n := testutil.ToFloat64(ce.s.metrics.requests.WithLabelValues("http", "content-cut")); n != 1 {
		t.Errorf("content-cut counted %v answers, want 1", n)
	}
	ce.page("/early", "text/html", htmlHead+"<p>"+harmful7+"</p>", filler+"</body></html>")
	if _, body = get(t, ce.client("", "", ""), ce.url("pages.test", "/early")); !strings.Contains(body, "The rest of this page is blocked") {
		t.Errorf("phrases within the size cap were not scored: %q", body)
	}
	// 96 MiB of harmless HTML under an 8 MiB cap: while the client reads
	// slowly, the origin cannot run far ahead (socket buffers only).
	ce.editProxy(func(p *config.Proxy) { p.ContentCheck.MaxBytes = 8 << 20 })
	const total = 96 << 20
	chunk := []byte(strings.Repeat("<p>Lava and ash. Rocks and minerals.</p>\n", 400))
	ce.mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		for n := 0; n < total; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			ce.written.Add(int64(len(chunk)))
		}
	})
	slow := ce.client("", "", "")
	slow.Timeout = 2 * time.Minute // the race detector is slow; the read ends by itself
	resp, err := slow.Get(ce.url("pages.test", "/big"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.CopyN(io.Discard, resp.Body, 1<<20); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // let a proxy that buffers run ahead
	if w := ce.written.Load(); w > 64<<20 {
		t.Errorf("the origin wrote %d MiB while the client had read 1 MiB: the answer is held, not streamed", w>>20)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if w := ce.written.Load(); err != nil || n+1<<20 != w {
		t.Errorf("read %d more bytes (%v), want %d", n, err, w-1<<20)
	}
}

// TestContentConfig: the config's content settings and their errors.
func TestContentConfigDefaults(t *testing.T) {
	c, err := config.Parse([]byte("groups:\n  students: {block: []}\n  staff: {block: []}\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !c.ContentCheck("students") || c.ContentCheck("staff") || c.ContentMaxBytes() != 1<<20 || !c.AIHost("chatgpt.com") || !c.ContentExempt("www.samaritans.org") {
		t.Error("defaults")
	}
	if !bytes.Contains(config.Example, []byte("content_check:")) {
		t.Error("example.yaml has no content_check")
	}
}

// editWatch changes the watchlists section and publishes a new engine.
func (e *env) editWatch(edit func(w *config.Watchlists)) {
	c := *e.cur.Load()
	edit(&c.Watchlists)
	e.publish(&c)
}

func (e *env) publish(c *config.Config) {
	eng, err := policy.New(c, e.ix)
	if err != nil {
		e.t.Fatal(err)
	}
	e.cur.Store(c)
	e.eng.Store(eng)
}

func policyReq(host string) policy.Request {
	return policy.Request{Client: netip.MustParseAddr("127.0.0.1"), Host: host}
}

// TestContentDecryptedHTTPS: on decrypted HTTPS (decrypt: all), over
// HTTP/2 and HTTP/1.1, a page over the block threshold gets the notice
// and a block event with the https URL; never-decrypt hosts are
// tunnelled and never scored.
func TestContentDecryptedHTTPS(t *testing.T) {
	ie := newInspectEnv(t, "")
	ie.setDecrypt(config.DecryptAll)
	mux := ie.origin.Config.Handler.(*http.ServeMux)
	mux.HandleFunc("/content/bad", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, htmlHead+"<p>"+harmful7+"</p><p>TAIL</p></body></html>")
	})
	for _, h2 := range []bool{true, false} {
		path := "/content/bad?h2=" + strconv.FormatBool(h2) // repeats of one URL collapse into one event
		resp, body := get(t, ie.httpsClient(ie.school, h2), ie.url("news.test", path))
		if resp.StatusCode != 200 || !strings.Contains(body, "The rest of this page is blocked") || strings.Contains(body, "TAIL") {
			t.Fatalf("h2=%v: %d %q", h2, resp.StatusCode, body)
		}
		ev := ie.sink.waitEvent(t, func(ev reports.Event) bool { return isContent(ev) && strings.Contains(body, ev.Ref) })
		if ev.Action != "block" || ev.Source != "connect" || ev.Protocol != "https" || ev.URL != ie.url("news.test", path) {
			t.Errorf("h2=%v: event %+v", h2, ev)
		}
	}
	// www.nhs.uk is on the never-decrypt list: tunnelled, the origin's own
	// certificate, the page whole.
	resp, body := get(t, ie.httpsClient(ie.originPool, true), ie.url("www.nhs.uk", "/content/bad"))
	if issuer(resp) != "Test origins CA" || !strings.Contains(body, "TAIL") {
		t.Errorf("never-decrypt host: issuer %q, %q", issuer(resp), body)
	}
}

// BenchmarkContentCheck50K measures keep-alive GETs of a 50 KiB HTML page
// (text, markup, a script and a style sheet, nothing on any watchlist)
// through the proxy, alternately from a client whose group has the
// content check on (students) and one whose group has it off (guests),
// so that both see the same load. Per mode: the mean and 99th percentile
// request time, and the process CPU time per request (client, proxy and
// origin together; the difference is the check's).
func BenchmarkContentCheck50K(b *testing.B) {
	ce := &contentEnv{env: newEnv(b, envOpts{}), mux: http.NewServeMux()}
	page := benchPage(50 << 10)
	ce.pages = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(page)
	}))
	b.Cleanup(ce.pages.Close)
	_, port, _ := net.SplitHostPort(ce.pages.Listener.Addr().String())
	ce.allowPort(port)
	ce.res.mu.Lock()
	ce.res.names["pages.test"] = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	ce.res.mu.Unlock()
	c := *ce.cur.Load()
	c.Groups = maps.Clone(c.Groups)
	g := *c.Groups["students"] // the same policy, the check off
	g.Name, g.Networks, g.ContentCheck = "guests", []netip.Prefix{netip.MustParsePrefix("127.0.0.3/32")}, "off"
	c.Groups["guests"] = &g
	ce.publish(&c)
	u := ce.url("pages.test", "/")
	clients := [2]*http.Client{ce.client("", "", ""), ce.client("127.0.0.3", "", "")} // on, off
	var times [2][]time.Duration
	var cpu [2]time.Duration
	cpuNow := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	get := func(m int) {
		start, c0 := time.Now(), cpuNow()
		resp, err := clients[m].Get(u)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		times[m] = append(times[m], time.Since(start))
		cpu[m] += cpuNow() - c0
		if n != int64(len(page)) {
			b.Fatalf("%d bytes", n)
		}
	}
	get(0)
	get(1)
	times, cpu = [2][]time.Duration{}, [2]time.Duration{}
	b.ReportAllocs()
	b.SetBytes(2 * int64(len(page)))
	b.ResetTimer()
	for i := range b.N {
		get(i & 1) // alternate which goes first
		get(1 - i&1)
	}
	b.StopTimer()
	for m, name := range []string{"on", "off"} {
		ts := times[m]
		slices.Sort(ts)
		var sum time.Duration
		for _, d := range ts {
			sum += d
		}
		b.ReportMetric(float64(sum.Microseconds())/float64(len(ts)), name+"-mean-µs")
		b.ReportMetric(float64(ts[len(ts)*99/100].Microseconds()), name+"-p99-µs")
		b.ReportMetric(float64(cpu[m].Microseconds())/float64(len(ts)), name+"-cpu-µs")
	}
}

// benchPage is an ordinary HTML page of about n bytes.
func benchPage(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Volcanoes – KS3 Geography</title>
<style>body{font-family:sans-serif}.card{border:1px solid #ccc;padding:1rem}</style>
<script>window.dataLayer=window.dataLayer||[];function gtag(){dataLayer.push(arguments)}gtag('js',new Date());</script></head><body>`)
	for i := 0; b.Len() < n-200; i++ {
		b.WriteString(`<div class="card"><h2>Section ` + strconv.Itoa(i) + `</h2><p>A volcano is an opening in the Earth&rsquo;s crust through which lava, ash and gases escape. <a href="/more?id=` + strconv.Itoa(i) + `">Read more</a> about <b>plate tectonics</b>, magma chambers &amp; eruptions.</p><ul><li>Shield volcanoes</li><li>Composite volcanoes</li></ul></div>` + "\n")
	}
	b.WriteString(`</body></html>`)
	return b.Bytes()
}

// BenchmarkContentScan50K measures the check's own work on a 50 KiB page:
// text extraction and scoring, no network.
func BenchmarkContentScan50K(b *testing.B) {
	e := newEnv(b, envOpts{})
	wl := e.eng.Load().Watchlist()
	page := benchPage(50 << 10)
	sc := wl.Get()
	b.SetBytes(int64(len(page)))
	b.ReportAllocs()
	for b.Loop() {
		var x textState
		sc.Begin()
		for i := 0; i < len(page); i += 16 << 10 {
			x.html(sc, page[i:min(i+16<<10, len(page))])
		}
		sc.Result()
	}
}

// discardRW is a ResponseWriter that keeps nothing.
type discardRW struct{ h http.Header }

func (d *discardRW) Header() http.Header         { return d.h }
func (d *discardRW) WriteHeader(int)             {}
func (d *discardRW) Write(p []byte) (int, error) { return len(p), nil }

// TestContentCheckAllocs bounds what the check allocates per answer: the
// writer and the scorer come from pools, the scan allocates nothing.
func TestContentCheckAllocs(t *testing.T) {
	ce := newContentEnv(t, "")
	page := benchPage(50 << 10)
	info := &reqInfo{client: netip.MustParseAddr("127.0.0.1"), host: "pages.test", dec: ce.eng.Load().Decide(policyReq("pages.test")), eng: ce.eng.Load()}
	r := httptest.NewRequest(http.MethodGet, "http://pages.test/page", nil)
	cfg := ce.cur.Load()
	dw := &discardRW{h: http.Header{}}
	run := func() {
		dw.h["Content-Type"] = []string{"text/html"}
		r.Header["Accept-Encoding"] = []string{"gzip"}
		info.rw = respWriter{ResponseWriter: dw, status: 200}
		cw := ce.s.contentCheck(&info.rw, r, info, cfg)
		cw.WriteHeader(200)
		for i := 0; i < len(page); i += 32 << 10 {
			_, _ = cw.Write(page[i:min(i+32<<10, len(page))])
		}
		if cw.finish() {
			t.Fatal("blocked")
		}
	}
	run()
	if raceOn {
		t.Skip("allocation counts are meaningless under the race detector (sync.Pool drops items)")
	}
	// The two []string above are the test's own.
	if n := testing.AllocsPerRun(50, run); n > 2 {
		t.Errorf("%v allocations per answer, want none of the check's own", n)
	}
}

// FuzzContentText runs the HTML and JSON readers over any bytes, split
// anywhere: no panic, and the closer is always one of the known ones.
func FuzzContentText(f *testing.F) {
	f.Add([]byte(htmlHead+"<p>"+harmful7+"&#x1F600;&amp;&#99999999999;</p><script>x</scr</script>"), 7)
	f.Add([]byte(`data: {"choices":[{"delta":{"content":"k\u0069ll \"my\"self\n"}}]}`), 3)
	wl, err := watchlistDefault()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, p []byte, cut int) {
		if cut < 0 || cut > len(p) {
			cut = len(p) / 2
		}
		sc := wl.Get()
		defer wl.Put(sc)
		var h, j textState
		sc.Begin()
		h.html(sc, p[:cut])
		h.html(sc, p[cut:])
		switch h.closer() {
		case "", ">", `">`, "'>", "-->", "</script>", "</style>":
		default:
			t.Fatalf("closer %q", h.closer())
		}
		sc.Begin()
		j.json(sc, p[:cut])
		j.json(sc, p[cut:])
		sc.Result()
	})
}

func watchlistDefault() (*watchlist.Watchlist, error) { return watchlist.Default() }

// TestContentRepeatQuotesFirstReference: a repeat of a content block within
// the collapse window is stored as the first event's count, so its notice
// quotes the first event's reference, the one IT can find.
func TestContentRepeatQuotesFirstReference(t *testing.T) {
	ce := newContentEnv(t, "")
	ce.page("/bad", "text/html; charset=utf-8", htmlHead, "<p>"+harmful7+"</p>", "</div></body></html>")
	c := ce.client("", "", "")
	_, first := get(t, c, ce.url("pages.test", "/bad"))
	_, again := get(t, c, ce.url("pages.test", "/bad"))
	evs := ce.contentEvents()
	if len(evs) == 0 || evs[0].Ref == "" || !strings.Contains(first, evs[0].Ref) || !strings.Contains(again, evs[0].Ref) {
		t.Fatalf("stored %+v; the pages must quote its reference", evs)
	}
}
