package httpproxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/identity"
	"github.com/gatehouse-filter/gatehouse/policy"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// TestBlockPageLayout checks that the block page built from a layout is
// byte for byte the page html/template writes, for every kind of block
// and for fields full of characters that need escaping.
func TestBlockPageLayout(t *testing.T) {
	e := newEnv(t, envOpts{})
	base := *e.cfg
	cfgs := []*config.Config{e.cfg}
	odd := base
	odd.School.Name = `St "Mary's" <Primary> & Nursery + 1`
	odd.Proxy.BlockPage.Contact = ""
	odd.Proxy.BlockPage.AUPURL = "https://school.example/aup?a=1&b=<2>"
	odd.Proxy.BlockPage.Rules = map[string]string{"games": `Games & "fun" <after> school`}
	cfgs = append(cfgs, &odd)
	withSignin := base // the sign-in page on: its link where nobody is known
	withSignin.Identity.Signin.Listen = "10.0.0.5:443"
	withSignin.Identity.Signin.RedirectURL = `https://signin.school.example/callback`
	cfgs = append(cfgs, &withSignin)

	decs := []policy.Decision{
		{Restricted: true, HasCategory: true, Category: bl.Pornography},
		{},
		{HasCategory: true, Category: bl.Pornography},
		{HasCategory: true, Category: bl.Games},
		{HasCategory: true, Category: bl.Malware},
		{HasCategory: true, Category: bl.FirstListBit + 3},
	}
	nasty := "a\x00b\"c&d'e+f<g>h\xff\xfe\uFDD0\uFFFF é 🙂"
	long := "http://x.test/" + strings.Repeat("é", 150) + "?q=<script>"
	fields := []pageFields{
		{host: "adult.test", url: "http://adult.test/x", user: "", client: netip.MustParseAddr("10.1.2.3")},
		{host: nasty, url: "http://h/" + nasty, user: nasty, client: netip.MustParseAddr("2001:db8::1")},
		{host: "x.test", url: long, user: "jsmith", client: netip.MustParseAddr("fe80::1%eth<0>")},
		{host: "x.test", url: strings.Repeat("a", 200), client: netip.Addr{}},
		{host: "x.test", url: strings.Repeat("a", 201), user: "u", client: netip.MustParseAddr("::ffff:10.0.0.1")},
	}
	when := time.Date(2026, 12, 4, 9, 5, 0, 0, time.UTC)
	for ci, cfg := range cfgs {
		lays := e.s.layouts(cfg)
		for di := range decs {
			for _, device := range []string{"", `Lab <3> "PC"`} {
				for fi, f := range fields {
					d := decs[di]
					d.Device = device
					f.dec, f.when, f.ref, f.key = &d, when.In(lays.loc), newRef(), e.s.reports.key
					pd := staticPage(cfg, &d)
					pd.Host, pd.When, pd.Who, pd.Ref = f.host, f.when.Format(whenLayout), who(&d, f.user, f.client), f.ref
					if f.user == "" && device == "" {
						pd.SignIn = pd.signin
						f.signin = true
					}
					if !d.Restricted {
						pd.URL = truncate(formValue(f.url), 200) // the form sends back what a browser read
						pd.Token = e.s.reports.key.token(f.client, f.ref, pd.URL, pd.Category)
					}
					var want strings.Builder
					if err := pageTmpl.Execute(&want, pd); err != nil {
						t.Fatal(err)
					}
					lay := lays.get(cfg, &d)
					got := string(lay.render(nil, &f))
					if got != want.String() {
						t.Errorf("config %d, decision %d, device %q, fields %d: layout page differs from the template's\ngot:\n%s\nwant:\n%s",
							ci, di, device, fi, got, want.String())
					}
					// A repeat's page, its reference (and the form's token)
					// changed in place, is the page rendered with that one.
					first, again := newRef(), []byte(got)
					lay.reRef(again, &f, first)
					if fresh := lay.render(nil, &f); string(again) != string(fresh) {
						t.Errorf("config %d, decision %d, device %q, fields %d: re-referenced page differs from one rendered with its reference\ngot:\n%s\nwant:\n%s",
							ci, di, device, fi, again, fresh)
					}
				}
			}
		}
	}
	// The link is there where nobody is known (a lease names only a device).
	d := policy.Decision{HasCategory: true, Category: bl.Pornography}
	page := func(user, device string, school bool, who *identity.Entry) string {
		d := d
		d.Device, d.SchoolDevice = device, school
		info := &reqInfo{host: "x.test", dec: d, user: user, who: who, client: netip.MustParseAddr("10.1.2.3")}
		rec := httptest.NewRecorder()
		e.s.blockPage(rec, nil, info, &withSignin, "http://x.test/", "")
		return rec.Body.String()
	}
	link := `<a href="https://signin.school.example/">Sign in with your school account</a>`
	for _, c := range []struct {
		name, user, device string
		school             bool
		who                *identity.Entry
		want               bool
	}{
		{"nobody known", "", "", false, nil, true},
		{"a device named by its lease only", "", "amiras-phone", false, &identity.Entry{Device: "amiras-phone"}, true},
		{"a named user", "amira", "", false, nil, false},
		{"a school device (clients.devices)", "", "LIB-PC-01", true, nil, false},
		// Its lease names it by its static name too.
		{"a school device by MAC at its lease", "", "LIB-PC-02", true, &identity.Entry{Device: "LIB-PC-02", MAC: "3c:22:fb:12:34:56"}, false},
		{"a named user on a leased device", "amira", "amiras-phone", false, &identity.Entry{User: "amira", Device: "amiras-phone"}, false},
	} {
		if got := strings.Contains(page(c.user, c.device, c.school, c.who), link); got != c.want {
			t.Errorf("%s: sign-in link %t, want %t", c.name, got, c.want)
		}
	}
	if e.s.layouts(cfgs[1]) == e.s.layouts(cfgs[0]) {
		t.Error("a new config kept the old layouts")
	}
}

// TestBlockedKeepAlive sends blocked and allowed requests over one
// connection: each block is a full 403 page and the connection stays open.
func TestBlockedKeepAlive(t *testing.T) {
	e := newEnv(t, envOpts{})
	r := e.raw(t)
	blocked := e.originURL("adult.test", "/x?y=1")
	for i := 0; i < 3; i++ {
		r.send("GET " + blocked + " HTTP/1.1\r\nHost: adult.test\r\nAccept: " + browserAccept + "\r\n\r\n")
		resp, body := r.read(http.MethodGet)
		if resp.StatusCode != http.StatusForbidden || resp.Close || resp.ContentLength != int64(len(body)) {
			t.Fatalf("block %d: status %d, close %v, length %d for %d bytes", i, resp.StatusCode, resp.Close, resp.ContentLength, len(body))
		}
		ref := resp.Header.Get("X-Gatehouse-Ref")
		for _, want := range []string{
			"<h1>This site is blocked</h1>", "<strong>adult.test</strong>", "listed as <strong>pornography</strong>", "acceptable use policy", // what and why
			"127.0.0.1", "<dt>Time</dt>", // who and when
			"<dd>" + ref + "</dd>", `name="ref" value="` + ref + `"`, "Report a mistake", // reference and the form
			"http://adult.test:", "Test Academy",
		} {
			if ref == "" || !strings.Contains(body, want) {
				t.Fatalf("block %d (ref %q): page lacks %q:\n%s", i, ref, want, body)
			}
		}
		for _, f := range pageHeaders {
			if v := resp.Header[f.k]; len(v) != 1 || v[0] != f.v[0] {
				t.Errorf("block %d: %s: %q, want %q once", i, f.k, v, f.v[0])
			}
		}
		if len(resp.Header["Content-Length"]) != 1 || len(resp.Header["X-Gatehouse-Ref"]) != 1 {
			t.Errorf("block %d: headers %v", i, resp.Header)
		}
	}
	r.send("HEAD " + blocked + " HTTP/1.1\r\nHost: adult.test\r\n\r\n")
	if resp, body := r.read(http.MethodHead); resp.StatusCode != http.StatusForbidden || body != "" || resp.Close {
		t.Fatalf("HEAD: status %d, close %v, body %q", resp.StatusCode, resp.Close, body)
	}
	r.send("GET " + e.originURL("site.test", "/small") + " HTTP/1.1\r\nHost: site.test\r\n\r\n")
	if resp, body := r.read(http.MethodGet); resp.StatusCode != http.StatusOK || len(body) != 1024 {
		t.Fatalf("allowed after blocks: status %d, %d bytes", resp.StatusCode, len(body))
	}
	// HTTP/1.0 with keep-alive asked for keeps the connection too.
	r.send("GET " + blocked + " HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	if resp, _ := r.read(http.MethodGet); resp.StatusCode != http.StatusForbidden || resp.Close {
		t.Fatalf("HTTP/1.0 keep-alive block: status %d, close %v", resp.StatusCode, resp.Close)
	}
	// A refused tunnel: one line of text, and the connection stays open.
	for i := 0; i < 2; i++ {
		r.send("CONNECT adult.test:443 HTTP/1.1\r\nHost: adult.test:443\r\n\r\n")
		resp, body := r.read(http.MethodConnect)
		ref := resp.Header.Get("X-Gatehouse-Ref")
		want := "403 Forbidden: adult.test is blocked by Test Academy's web filter (pornography). Reference " + ref + ".\n"
		if resp.StatusCode != http.StatusForbidden || resp.Close || ref == "" || body != want ||
			resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" || resp.Header.Get("Via") != Via {
			t.Fatalf("CONNECT %d: status %d, close %v, headers %v, body %q", i, resp.StatusCode, resp.Close, resp.Header, body)
		}
	}
	if !r.stillOpen() {
		t.Fatal("the proxy closed the connection after block answers")
	}
}

// discardWriter is a ResponseWriter that keeps only the status and size.
type discardWriter struct {
	h    http.Header
	code int
	n    int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(c int)           { w.code = c }
func (w *discardWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

// TestBlockedRequestAllocs bounds the garbage of answering a repeated
// blocked request (decision, answer, event): the template and its
// reflection took about 120 allocations. A page load gets the page; a
// request that is not one (no Accept naming HTML) gets one line of text.
func TestBlockedRequestAllocs(t *testing.T) {
	e := newEnv(t, envOpts{})
	for _, tc := range []struct {
		name, accept string
		min, max     int // bytes of the answer
	}{
		{"page", "Accept: " + browserAccept + "\r\n", 1000, 4000},
		{"text", "", 40, 200},
		{"image", "Accept: image/avif,image/webp,*/*\r\nSec-Fetch-Dest: image\r\n", 40, 200},
	} {
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(
			"GET " + e.originURL("adult.test", "/x") + " HTTP/1.1\r\nHost: adult.test\r\n" + tc.accept + "\r\n")))
		if err != nil {
			t.Fatal(err)
		}
		req.RemoteAddr = "127.0.0.1:40000"
		w := &discardWriter{h: http.Header{}}
		serve := func() {
			clear(w.h)
			w.n = 0
			e.s.ServeHTTP(w, req)
		}
		serve()
		if w.code != http.StatusForbidden || w.n < tc.min || w.n > tc.max {
			t.Fatalf("%s: status %d, %d bytes, want %d to %d", tc.name, w.code, w.n, tc.min, tc.max)
		}
		// reqInfo, host, URL, reference, header values: a handful.
		if n := testing.AllocsPerRun(200, serve); n > 12 {
			t.Errorf("%s: a repeated blocked request allocates %.0f times, want at most 12", tc.name, n)
		}
		if testing.Verbose() {
			t.Logf("%s: %.0f allocations; answer %d bytes", tc.name, testing.AllocsPerRun(200, serve), w.n)
		}
	}
}

// TestBlockAnswerForm: a browser's page load gets the block page; an
// image, script or fetch from a page, and a tool asking for anything,
// get one line of text with the same reference, category and school.
// Both are blocks with their event.
func TestBlockAnswerForm(t *testing.T) {
	e := newEnv(t, envOpts{})
	for _, tc := range []struct {
		name    string
		headers map[string]string
		page    bool
	}{
		{"chromium page load", map[string]string{"Accept": browserAccept, "Sec-Fetch-Dest": "document", "Sec-Fetch-Mode": "navigate"}, true},
		{"frame", map[string]string{"Accept": browserAccept, "Sec-Fetch-Dest": "iframe"}, true},
		{"browser without Sec-Fetch", map[string]string{"Accept": "TEXT/HTML,*/*"}, true},
		{"navigate only", map[string]string{"Sec-Fetch-Mode": "navigate"}, true},
		{"image", map[string]string{"Accept": "image/avif,image/webp,*/*;q=0.8", "Sec-Fetch-Dest": "image"}, false},
		{"script with HTML in Accept", map[string]string{"Accept": "text/html", "Sec-Fetch-Dest": "script"}, false},
		{"fetch", map[string]string{"Accept": "*/*", "Sec-Fetch-Dest": "empty", "Sec-Fetch-Mode": "cors"}, false},
		{"curl", map[string]string{"Accept": "*/*"}, false},
		{"no Accept", nil, false},
	} {
		// A path of its own: repeats of one URL are collapsed into the first event.
		req, _ := http.NewRequest("GET", e.originURL("adult.test", "/"+strings.ReplaceAll(tc.name, " ", "-")), nil)
		for k, v := range tc.headers {
			req.Header.Set(k, v)
		}
		c := e.client("", "", "").Transport.(browser).Transport // sends the headers as they are
		resp, err := c.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body, ref := string(b), resp.Header.Get("X-Gatehouse-Ref")
		if resp.StatusCode != http.StatusForbidden || ref == "" || !strings.Contains(body, ref) || resp.ContentLength != int64(len(b)) {
			t.Fatalf("%s: %d, ref %q, %d of %d bytes\n%s", tc.name, resp.StatusCode, ref, len(b), resp.ContentLength, body)
		}
		ct := resp.Header.Get("Content-Type")
		if tc.page {
			if ct != "text/html; charset=utf-8" || !strings.Contains(body, "<h1>This site is blocked</h1>") || !strings.Contains(body, "Report a mistake") {
				t.Errorf("%s: want the page, got %s\n%s", tc.name, ct, body)
			}
		} else {
			want := "403 Forbidden: adult.test is blocked by Test Academy's web filter (pornography). Reference " + ref + ".\n"
			if ct != "text/plain; charset=utf-8" || body != want {
				t.Errorf("%s: got %s %q, want %q", tc.name, ct, body, want)
			}
		}
		ev := e.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Ref == ref })
		if ev.Action != "block" || ev.Bytes != int64(len(b)) {
			t.Errorf("%s: event %+v", tc.name, ev)
		}
	}
}

// TestFrontBlockedAllocs bounds the garbage of the whole blocked path
// over a real connection: the front reading the request, the decision,
// the answer, the event and the write, for a plain GET (the block page)
// and a CONNECT (a one-line refusal; the connection stays open for the
// next try). The client side is raw bytes into a fixed buffer, so what is
// counted is the proxy's.
func TestFrontBlockedAllocs(t *testing.T) {
	e := newEnv(t, envOpts{})
	for _, tc := range []struct {
		name, req string
		max       float64 // allocations per request
	}{
		// The head's one string (reqread.go: the request, its URL, header
		// map and reqInfo are the connection's, reused after a block), the
		// reference, the answer's Content-Length and reference values and
		// the length's digits. net/http's parser made it 15.
		{"GET", "GET " + e.originURL("adult.test", "/x") + " HTTP/1.1\r\nHost: adult.test\r\nUser-Agent: test\r\n\r\n", 5},
		{"CONNECT", "CONNECT adult.test:443 HTTP/1.1\r\nHost: adult.test:443\r\nUser-Agent: test\r\n\r\n", 5},
	} {
		c := e.dial("")
		req := []byte(tc.req)
		buf := make([]byte, 64<<10)
		var fail string
		roundTrip := func() {
			if fail != "" {
				return
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(req); err != nil {
				fail = err.Error()
				return
			}
			n, end := 0, -1
			for end < 0 || n < end {
				m, err := c.Read(buf[n:])
				if err != nil {
					fail = err.Error()
					return
				}
				n += m
				if end < 0 {
					if h := bytes.Index(buf[:n], []byte("\r\n\r\n")); h >= 0 {
						i := bytes.Index(buf[:h], []byte("\r\nContent-Length: "))
						if i < 0 || !bytes.HasPrefix(buf, []byte("HTTP/1.1 403 ")) || bytes.Contains(buf[:h], []byte("Connection: close")) {
							fail = "not a keep-alive 403 with a length: " + string(buf[:h])
							return
						}
						i += len("\r\nContent-Length: ")
						l := 0
						for ; buf[i] >= '0' && buf[i] <= '9'; i++ {
							l = l*10 + int(buf[i]-'0')
						}
						end = h + 4 + l
					}
				}
			}
		}
		roundTrip()
		n := testing.AllocsPerRun(200, roundTrip)
		if fail != "" {
			t.Fatalf("%s: %s", tc.name, fail)
		}
		if testing.Verbose() {
			t.Logf("%s: %.0f allocations per blocked request", tc.name, n)
		}
		if n > tc.max {
			t.Errorf("%s: a blocked request over the front allocates %.0f times, want at most %.0f", tc.name, n, tc.max)
		}
	}
}

// TestRepeatQuotesFirstReference: repeats of a block within the collapse
// window are stored as the first event's count, so their pages quote the
// first event's reference code, the one IT can find (a "report a
// mistake" from a repeat's page names a stored event), in the page, the
// form and the header alike.
func TestRepeatQuotesFirstReference(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.client("", "", "")
	var refs []string
	for range 3 {
		resp, err := c.Get(e.originURL("adult.test", "/again"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		ref := resp.Header.Get("X-Gatehouse-Ref")
		if resp.StatusCode != http.StatusForbidden || ref == "" || strings.Count(string(body), ref) < 2 {
			t.Fatalf("%d, ref %q:\n%s", resp.StatusCode, ref, body)
		}
		refs = append(refs, ref)
	}
	if refs[1] != refs[0] || refs[2] != refs[0] {
		t.Fatalf("references %v: repeats must quote the first", refs)
	}
	ev := e.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Action == "block" && ev.Count == 1 })
	if ev.Ref != refs[0] {
		t.Fatalf("stored reference %q, pages quoted %q", ev.Ref, refs[0])
	}
}

// TestMistakeReportsBounded: "report a mistake" forms are counted per
// client address for an hour; many source addresses (an IPv6 device's can
// be any in its /64) must not grow the count without limit, and the
// flood refuses no one else.
func TestMistakeReportsBounded(t *testing.T) {
	now := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	m := newMistakeReports(func() time.Time { return now })
	m.max = 64
	pupil := netip.MustParseAddr("10.0.0.7")
	for range 3 {
		if !m.allow(pupil, 3) {
			t.Fatal("a report within the hour's 3 was refused")
		}
	}
	if m.allow(pupil, 3) {
		t.Fatal("a fourth report within the hour was taken")
	}
	base := netip.MustParseAddr("fd00::").As16()
	for i := range 4 * m.max {
		a := base
		a[14], a[15] = byte(i>>8), byte(i)
		if !m.allow(netip.AddrFrom16(a), 3) {
			t.Fatalf("address %d's first report was refused", i)
		}
	}
	m.mu.Lock()
	n := len(m.hits)
	m.mu.Unlock()
	if n > m.max {
		t.Fatalf("%d addresses counted, want at most %d", n, m.max)
	}
	if !m.allow(netip.MustParseAddr("10.0.0.8"), 3) {
		t.Fatal("another pupil's first report was refused after the flood")
	}
}

// TestMistakeReportRestrictedAnySpelling: a "report a mistake" form naming
// a page on the IWF list (a hand-made one: that block page has no form)
// is stored by hash however its address is written, and one whose address
// cannot be read is refused, not stored with the site in plain text.
func TestMistakeReportRestrictedAnySpelling(t *testing.T) {
	e := newEnv(t, envOpts{})
	admin := httptest.NewServer(e.s.AdminHandler())
	t.Cleanup(admin.Close)
	post := func(u string) int {
		t.Helper()
		e.s.reports.mu.Lock() // the test config's two reports an hour
		clear(e.s.reports.hits)
		e.s.reports.mu.Unlock()
		resp, err := http.PostForm(admin.URL+reportPath, e.reportForm("127.0.0.1", "GH-AAAA-BBBB", u, "", "for a project"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, u := range []string{
		"http://abuse.test/dir/page.html",
		"//abuse.test/dir/page.html",
		"HTTP://Abuse.TEST:80/%64ir/./page.html#top",
		"https://user@abuse.test./dir//page.html",
	} {
		if code := post(u); code != http.StatusOK {
			t.Fatalf("%q: %d", u, code)
		}
		ev := e.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Action == reports.ActionReport })
		if !ev.Restricted || strings.Contains(ev.Name+ev.URL+ev.Note, "abuse") {
			t.Errorf("%q stored as name %q url %q note %q restricted %v", u, ev.Name, ev.URL, ev.Note, ev.Restricted)
		}
		e.sink.mu.Lock()
		e.sink.ev = nil
		e.sink.mu.Unlock()
	}
	for _, u := range []string{"abuse.test/dir/page.html", "https:abuse.test/dir/page.html", "ftp://abuse.test/dir/page.html", "http:///dir"} {
		if code := post(u); code != http.StatusBadRequest {
			t.Errorf("%q: %d, want 400", u, code)
		}
	}
	if ev := e.sink.events(); len(ev) != 0 {
		t.Errorf("unreadable reports stored: %+v", ev)
	}
}

// TestReportMailedWording: the thank-you page says a report is mailed,
// and when, only as the config has it: never without a relay or an
// address to mail, and within reports.mistake_mail_every, not "a few
// minutes" when IT asked for one mail a day.
func TestReportMailedWording(t *testing.T) {
	for _, tt := range []struct {
		host       string
		recipients map[string][]string
		every      time.Duration
		want       string
	}{
		{"", map[string][]string{"it": {"it@school.example"}}, 5 * time.Minute, ""},
		{"smtp.school.example", map[string][]string{}, 5 * time.Minute, ""},
		{"smtp.school.example", map[string][]string{"headteacher": {"head@school.example"}}, 5 * time.Minute, ""},
		{"smtp.school.example", map[string][]string{"it": {"it@school.example"}}, 5 * time.Minute, "within 5 minutes"},
		{"smtp.school.example", map[string][]string{"dsl": {"dsl@school.example"}}, time.Minute, "within a minute"},
		{"smtp.school.example", map[string][]string{"it": {"it@school.example"}}, time.Hour, "within an hour"},
		{"smtp.school.example", map[string][]string{"it": {"it@school.example"}}, 90 * time.Minute, "within 2 hours"},
		{"smtp.school.example", map[string][]string{"it": {"it@school.example"}}, 24 * time.Hour, "within a day"},
	} {
		cfg := config.Default()
		cfg.Reports.SMTP.Host, cfg.Reports.Recipients, cfg.Reports.MistakeMailEvery = tt.host, tt.recipients, config.Duration(tt.every)
		if got := reportMailed(cfg); got != tt.want {
			t.Errorf("smtp %q, recipients %v, every %v: %q, want %q", tt.host, tt.recipients, tt.every, got, tt.want)
		}
	}
}
