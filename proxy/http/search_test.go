package httpproxy

import (
	"context"
	"io"
	"maps"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/policy"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// searchEnv is a proxy env whose search engines' hosts (and their
// safe-search endpoints, which the DNS-style rewrite dials) reach the
// plain test origin.
func searchEnv(t *testing.T, opts ...envOpts) *env {
	e := newEnv(t, append(opts, envOpts{})[0])
	lo := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	e.res.mu.Lock()
	for _, h := range []string{"www.google.com", "www.google.co.uk", "www.bing.com", "duckduckgo.com", "www.youtube.com",
		"search.yahoo.com", "www.ecosia.org", "en.wikipedia.org",
		bl.GoogleSafe, bl.BingSafe, bl.DuckDuckGoSafe, bl.YouTubeStrict, bl.YouTubeModerate} {
		e.res.names[h] = lo
	}
	e.res.mu.Unlock()
	return e
}

// editGroup changes a group of the running config and publishes an engine
// for it, as a reload would.
func (e *env) editGroup(name string, edit func(g *config.Group)) {
	c := *e.cur.Load()
	c.Groups = maps.Clone(c.Groups)
	g := *c.Groups[name]
	edit(&g)
	c.Groups[name] = &g
	eng, err := policy.New(&c, e.ix)
	if err != nil {
		e.t.Fatal(err)
	}
	e.cur.Store(&c)
	e.eng.Store(eng)
}

func isFlag(ev reports.Event) bool { return ev.Action == "flag" && ev.Reason == "watchlist" }

// TestSearchTermFlagged: an allowed search whose term (misspelt, in
// leetspeak) reaches the self-harm threshold is an event with the term,
// the engine, the client and the theme's critical severity; the search
// itself goes on.
func TestSearchTermFlagged(t *testing.T) {
	e := searchEnv(t)
	c := e.client("", "", "")
	resp, body := get(t, c, e.originURL("www.google.co.uk", "/search?q=how+to+k1ll+mys3lf&hl=en"))
	if resp.StatusCode != 200 || len(body) != 1024 {
		t.Fatalf("search not served: %d", resp.StatusCode)
	}
	ev := e.sink.waitEvent(t, isFlag)
	if ev.SearchTerm != "how to k1ll mys3lf" || ev.SearchEngine != "Google" || ev.Category != "self-harm" ||
		ev.Severity != bl.SeverityCritical || ev.Route != bl.RouteDSL || ev.Group != "students" ||
		ev.Client != netip.MustParseAddr("127.0.0.1") || ev.Name != "www.google.co.uk" || !strings.Contains(ev.Entry, "kill myself") {
		t.Errorf("flag event %+v", ev)
	}
	// A harmless search is not flagged.
	get(t, c, e.originURL("www.google.co.uk", "/search?q=photosynthesis+ks3"))
	e.s.events.flush(true)
	n := 0
	for _, ev := range e.sink.events() {
		if isFlag(ev) {
			n++
			if ev.SearchTerm != "how to k1ll mys3lf" {
				t.Errorf("flagged %q", ev.SearchTerm)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d flag events, want 1", n)
	}
}

// TestBlockedSearchCarriesTerm: a blocked search's block event carries
// the term, and a term over a threshold is flagged as well.
func TestBlockedSearchCarriesTerm(t *testing.T) {
	e := searchEnv(t)
	e.editGroup("students", func(g *config.Group) { g.Deny = []string{"search.yahoo.com"} })
	c := e.client("", "", "")
	resp, _ := get(t, c, e.originURL("search.yahoo.com", "/search?p=suiside+methods"))
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d, want the block page", resp.StatusCode)
	}
	blk := e.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Action == "block" })
	if blk.SearchTerm != "suiside methods" || blk.SearchEngine != "Yahoo" {
		t.Errorf("block event %+v", blk)
	}
	fl := e.sink.waitEvent(t, isFlag)
	if fl.SearchTerm != "suiside methods" || fl.Category != "self-harm" || fl.Severity != bl.SeverityCritical {
		t.Errorf("flag event %+v", fl)
	}
	if e.hits.Load() != 0 {
		t.Error("the blocked search reached the origin")
	}
}

// TestSearchThemesAndThresholds: each theme reports with its own
// category and severity; a reload that raises a threshold applies to the
// next search.
func TestSearchThemesAndThresholds(t *testing.T) {
	e := searchEnv(t)
	c := e.client("", "", "")
	get(t, c, e.originURL("www.bing.com", "/search?q=how+to+join+isis"))
	ev := e.sink.waitEvent(t, isFlag)
	if ev.Category != "extremism" || ev.Severity != bl.SeverityHigh || ev.SearchEngine != "Bing" {
		t.Errorf("extremism event %+v", ev)
	}
	cur := *e.cur.Load()
	cur.Watchlists.Themes = map[string]config.WatchlistTheme{"bullying": {Threshold: 50}}
	eng, err := policy.New(&cur, e.ix)
	if err != nil {
		t.Fatal(err)
	}
	e.cur.Store(&cur)
	e.eng.Store(eng)
	get(t, c, e.originURL("duckduckgo.com", "/?q=im+being+bullied"))
	get(t, c, e.originURL("www.youtube.com", "/results?search_query=where+to+buy+weed"))
	ev = e.sink.waitEvent(t, func(ev reports.Event) bool { return isFlag(ev) && ev.Category == "drugs" })
	if ev.SearchTerm != "where to buy weed" || ev.SearchEngine != "YouTube" || ev.Severity != bl.SeverityMedium {
		t.Errorf("drugs event %+v", ev)
	}
	for _, ev := range e.sink.events() {
		if isFlag(ev) && ev.Category == "bullying" {
			t.Errorf("bullying flagged under a threshold of 50: %+v", ev)
		}
	}
}

// TestSafeSearchParams: for a group with safe search on, the origin
// receives the engine's safe parameter (the client's own value replaced)
// and YouTube's header; moderate and off are honoured.
func TestSafeSearchParams(t *testing.T) {
	e := searchEnv(t)
	c := e.client("", "", "")
	check := func(host, path, param, want string) {
		t.Helper()
		e.lastReq.Store(nil)
		get(t, c, e.originURL(host, path))
		r := e.lastReq.Load()
		if r == nil {
			t.Fatalf("%s%s: origin not reached", host, path)
		}
		q := r.URL.Query()
		if got := q[param]; want == "" && len(got) != 0 || want != "" && (len(got) != 1 || got[0] != want) {
			t.Errorf("%s%s: origin saw %s=%q (query %q), want %q", host, path, param, got, r.URL.RawQuery, want)
		}
	}
	header := func(want string) {
		t.Helper()
		e.lastReq.Store(nil)
		req, _ := http.NewRequest("GET", e.originURL("www.youtube.com", "/results?search_query=cats"), nil)
		req.Header.Set("YouTube-Restrict", "Off") // the client's own value is replaced
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		r := e.lastReq.Load()
		if got := r.Header.Values("YouTube-Restrict"); want == "" && !(len(got) == 1 && got[0] == "Off") || want != "" && (len(got) != 1 || got[0] != want) {
			t.Errorf("YouTube-Restrict %q, want %q", got, want)
		}
	}
	// students: strict (the default).
	check("www.google.com", "/search?q=cats&safe=off", "safe", "active")
	check("www.bing.com", "/search?q=cats&adlt=off", "adlt", "strict")
	check("duckduckgo.com", "/?q=cats&kp=-2", "kp", "1")
	check("search.yahoo.com", "/search?p=cats", "vm", "r")
	// Yahoo's own result links carry path parameters, which its server
	// drops: still its search path.
	check("search.yahoo.com", "/search;_ylt=AwrFQ;_ylu=Y29sbwNiZjEE?p=cats&vm=p", "vm", "r")
	check("www.bing.com", "/search;x=1?q=cats&adlt=off", "adlt", "strict")
	check("www.google.com", "/maps?q=cats", "safe", "") // not a search path
	header("Strict")

	e.editGroup("students", func(g *config.Group) { g.SafeSearch = "moderate" })
	check("www.bing.com", "/search?q=cats", "adlt", "moderate")
	check("duckduckgo.com", "/?q=cats", "kp", "-1")
	check("search.yahoo.com", "/search?p=cats", "vm", "i")
	header("Moderate")

	e.editGroup("students", func(g *config.Group) { g.SafeSearch = "off" })
	check("www.google.com", "/search?q=cats&safe=off", "safe", "off")
	header("")
}

// TestNotSearchNoTerm: requests to other hosts, and to a search engine's
// other paths, carry no term.
func TestNotSearchNoTerm(t *testing.T) {
	e := searchEnv(t)
	e.editProxy(func(p *config.Proxy) { p.Events.LogAllowed = true })
	c := e.client("", "", "")
	get(t, c, e.originURL("site.test", "/search?q=kill+myself"))
	get(t, c, e.originURL("www.google.com", "/maps?q=kill+myself"))
	e.s.events.flush(true)
	for _, ev := range e.sink.events() {
		if ev.SearchTerm != "" || isFlag(ev) {
			t.Errorf("event %+v", ev)
		}
	}
	if n := len(e.sink.events()); n != 2 {
		t.Errorf("%d events, want the 2 allowed requests", n)
	}
}

// TestRestrictedSearchNoTerm: a search URL on the restricted tier's list
// is blocked with no term anywhere: not on the block event, and no
// watchlist flag (which would store it in plain text).
func TestRestrictedSearchNoTerm(t *testing.T) {
	e := searchEnv(t)
	if err := os.WriteFile(filepath.Join(e.dir, "iwf.txt"), []byte(hashHex("bing.com/search")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sources, err := policy.Sources(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := bl.NewManager(filepath.Join(e.dir, "cache2"), sources, e.cfg.Location(), nil)
	if _, err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.ix = m.Index()
	eng, err := policy.New(e.cfg, e.ix)
	if err != nil {
		t.Fatal(err)
	}
	e.eng.Store(eng)
	resp, body := get(t, e.client("", "", ""), e.originURL("www.bing.com", "/search?q=how+to+kill+myself"))
	if resp.StatusCode != http.StatusForbidden || strings.Contains(body, "kill") {
		t.Fatalf("status %d\n%s", resp.StatusCode, body)
	}
	e.s.events.flush(true)
	evs := e.sink.events()
	if len(evs) != 1 || !evs[0].Restricted || evs[0].SearchTerm != "" || evs[0].SearchEngine != "" || evs[0].URL != "" {
		t.Errorf("events %+v", evs)
	}
}

// TestSearchHookWithoutEngine: a request record made without its engine
// (another front door) is served with the current one, not a panic.
func TestSearchHookWithoutEngine(t *testing.T) {
	e := searchEnv(t)
	r, _ := http.NewRequest("GET", "http://www.bing.com/search?q=how+to+k1ll+mys3lf", nil)
	info := &reqInfo{host: "www.bing.com"}
	info.dec.Group = "students"
	e.s.searchRequest(r, info)
	e.s.safeSearch(r, info)
	if info.search == nil || info.search.term != "how to k1ll mys3lf" || len(info.search.hits) != 1 || r.URL.Query().Get("adlt") != "strict" {
		t.Fatalf("search %+v, query %q", info.search, r.URL.RawQuery)
	}
}

// TestSafeSearchPostedForm: a search form POSTed to a search path (as
// DuckDuckGo's html and lite pages send theirs) reaches the site with the
// engine's safe-search value in its body, whatever the pupil's form said
// (kp=-2 is DuckDuckGo's "off"), and a Content-Length that fits the new
// body. A body that is not URL-encoded, or longer than the part the proxy
// reads, is passed on as it came.
func TestSafeSearchPostedForm(t *testing.T) {
	e := searchEnv(t)
	type seen struct {
		query, body string
		length      int64
	}
	got := make(chan seen, 1)
	base := e.extraOrigin("duckduckgo.com", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("origin reading the body: %v", err)
		}
		got <- seen{r.URL.RawQuery, string(b), r.ContentLength}
	})
	e.res.mu.Lock()
	for _, h := range []string{"html.duckduckgo.com", "lite.duckduckgo.com"} {
		e.res.names[h] = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	}
	e.res.mu.Unlock()
	port := base[strings.LastIndexByte(base, ':'):]
	c := e.client("", "", "")
	post := func(host, path, ctype, body string, chunked bool) seen {
		t.Helper()
		var rd io.Reader = strings.NewReader(body)
		if chunked {
			rd = io.MultiReader(rd) // length unknown: sent chunked
		}
		req, _ := http.NewRequest(http.MethodPost, "http://"+host+port+path, rd)
		req.Header.Set("Content-Type", ctype)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST %s%s: %d", host, path, resp.StatusCode)
		}
		select {
		case s := <-got:
			if s.length >= 0 && s.length != int64(len(s.body)) {
				t.Errorf("POST %s%s: Content-Length %d for a body of %d bytes", host, path, s.length, len(s.body))
			}
			return s
		default:
			t.Fatalf("POST %s%s: the origin was not reached", host, path)
			return seen{}
		}
	}
	form := "application/x-www-form-urlencoded"
	kp := func(s seen) []string {
		v, err := url.ParseQuery(s.body)
		if err != nil {
			t.Fatalf("origin's body %q: %v", s.body, err)
		}
		if v.Get("q") != "cats" {
			t.Errorf("origin's body %q lost the search", s.body)
		}
		return v["kp"]
	}
	for _, tc := range []struct {
		name, host, path, body string
		chunked                bool
	}{
		{"html, kp=-2", "html.duckduckgo.com", "/html/", "q=cats&kp=-2&b=", false},
		{"lite, no kp", "lite.duckduckgo.com", "/lite/", "q=cats", false},
		{"escaped and repeated", "duckduckgo.com", "/html", "kp=-2&q=cats&%6Bp=-2&kp=-1", false},
		{"chunked", "html.duckduckgo.com", "/html/", "q=cats&kp=-2", true},
	} {
		s := post(tc.host, tc.path, form+"; charset=UTF-8", tc.body, tc.chunked)
		if v := kp(s); len(v) != 1 || v[0] != "1" {
			t.Errorf("%s: the site received %q (kp=%q), want kp=1 alone", tc.name, s.body, v)
		}
		if !strings.Contains(s.query, "kp=1") {
			t.Errorf("%s: URL query %q", tc.name, s.query)
		}
	}
	// Refused: a body that is not a URL-encoded form, and a form longer
	// than the part read (padding, then kp=-2 and the search): neither
	// could be scored nor made safe. Before, both went to the site as
	// they came.
	long := "pad=" + strings.Repeat("x", maxFormPeek) + "&q=cats&kp=-2"
	for _, tc := range []struct{ name, url, ctype, body string }{ // distinct URLs: not collapsed into one event
		{"text/plain", "html.duckduckgo.com" + port + "/html/", "text/plain", "q=cats&kp=-2"},
		{"multipart", "lite.duckduckgo.com" + port + "/lite/", "multipart/form-data; boundary=b", "--b\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\ncats\r\n--b--\r\n"},
		{"long form", "duckduckgo.com" + port + "/html", form, long},
	} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+tc.url, strings.NewReader(tc.body))
		req.Header.Set("Content-Type", tc.ctype)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "could not check this search") {
			t.Errorf("%s: %d %q, want 403", tc.name, resp.StatusCode, b)
		}
		select {
		case s := <-got:
			t.Errorf("%s: the site received %q", tc.name, s.body)
		default:
		}
		ref := resp.Header.Get("X-Gatehouse-Ref")
		ev := e.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Reason == "search-form" && ev.Ref == ref })
		if ev.Action != "block" || !ev.Bypass || ev.Route != "dsl" {
			t.Errorf("%s: event %+v", tc.name, ev)
		}
	}
	// An empty POST is no search: passed on.
	if s := post("html.duckduckgo.com", "/html/", "text/plain", "", false); s.body != "" {
		t.Errorf("empty POST: body %q", s.body)
	}

	e.editGroup("students", func(g *config.Group) { g.SafeSearch = "moderate" })
	if v := kp(post("html.duckduckgo.com", "/html/", form, "q=cats&kp=-2", false)); len(v) != 1 || v[0] != "-1" {
		t.Errorf("moderate: kp=%q, want -1", v)
	}
	e.editGroup("students", func(g *config.Group) { g.SafeSearch = "off" })
	if s := post("html.duckduckgo.com", "/html/", form, "q=cats&kp=-2", false); s.body != "q=cats&kp=-2" {
		t.Errorf("safe search off: body changed to %q", s.body)
	}
	// Bing's pages do not post their searches: a long POST there is passed on.
	if s := post("www.bing.com", "/search", "text/plain", long, false); s.body != long {
		t.Errorf("bing: body changed (%d bytes)", len(s.body))
	}
}

// TestSearchFormAndURLTerms: a search POSTed with a term in its URL and
// another in its form body has both scored, whichever is harmful: each
// that reaches a threshold is flagged with its own term, the request's
// own event carries the worse, and the site still gets the safe value in
// the URL and the body.
func TestSearchFormAndURLTerms(t *testing.T) {
	for _, tc := range []struct {
		name, query, body string
		flags             map[string]string // term → category
		term              string            // on the allowed request's event
	}{
		{"harmless URL, harmful form", "q=homework", "q=how+to+kill+myself&b=",
			map[string]string{"how to kill myself": "self-harm"}, "how to kill myself"},
		{"harmful URL, harmless form", "q=how+to+kill+myself", "q=homework",
			map[string]string{"how to kill myself": "self-harm"}, "how to kill myself"},
		{"both harmful", "q=how+to+join+isis", "q=how+to+kill+myself",
			map[string]string{"how to kill myself": "self-harm", "how to join isis": "extremism"}, "how to kill myself"},
		{"the same term twice", "q=how+to+kill+myself", "q=how+to+kill+myself",
			map[string]string{"how to kill myself": "self-harm"}, "how to kill myself"},
		{"neither", "q=homework", "q=photosynthesis", nil, "photosynthesis"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := searchEnv(t)
			e.editProxy(func(p *config.Proxy) { p.Events.LogAllowed = true })
			type seen struct{ query, body string }
			got := make(chan seen, 1)
			base := e.extraOrigin("html.duckduckgo.com", func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				got <- seen{r.URL.RawQuery, string(b)}
			})
			req, _ := http.NewRequest(http.MethodPost, base+"/html/?"+tc.query, strings.NewReader(tc.body+"&kp=-2"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := e.client("", "", "").Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			s := <-got
			if q, err := url.ParseQuery(s.query); err != nil || q.Get("kp") != "1" {
				t.Errorf("the site's URL query %q, want kp=1", s.query)
			}
			if b, err := url.ParseQuery(s.body); err != nil || len(b["kp"]) != 1 || b.Get("kp") != "1" || "q="+url.QueryEscape(b.Get("q")) != strings.SplitN(tc.body, "&", 2)[0] {
				t.Errorf("the site's body %q, want the form's q and kp=1", s.body)
			}
			e.s.events.flush(true)
			flags := map[string]string{}
			var allowed []reports.Event
			for _, ev := range e.sink.events() {
				switch {
				case isFlag(ev):
					if _, dup := flags[ev.SearchTerm]; dup {
						t.Errorf("%q flagged twice", ev.SearchTerm)
					}
					flags[ev.SearchTerm] = ev.Category
				case ev.Action == "rewrite": // html.duckduckgo.com is a safe-search host: its searches are rewrites
					allowed = append(allowed, ev)
				}
			}
			if !maps.Equal(flags, tc.flags) {
				t.Errorf("flags %v, want %v; events %v", flags, tc.flags, terms(e.sink.events()))
			}
			if len(allowed) != 1 || allowed[0].SearchTerm != tc.term {
				t.Errorf("allowed events %v, want one with %q", terms(allowed), tc.term)
			}
		})
	}
}

// TestYouTubeJSONSearch: YouTube's web page (after its first load) and its
// apps search by POSTing JSON to /youtubei/v1/search; the address bar
// shows /results?search_query= but that URL is never asked for. The
// body's "query" is the term, read and flagged on every YouTube host, and
// the site gets the body as it was sent.
func TestYouTubeJSONSearch(t *testing.T) {
	e := searchEnv(t)
	type seen struct {
		body     string
		length   int64
		restrict string
	}
	got := make(chan seen, 1)
	base := e.extraOrigin("www.youtube.com", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("origin reading the body: %v", err)
		}
		got <- seen{string(b), r.ContentLength, r.Header.Get("YouTube-Restrict")}
	})
	port := base[strings.LastIndexByte(base, ':'):]
	e.res.mu.Lock()
	for _, h := range []string{"m.youtube.com", "music.youtube.com", "youtubei.googleapis.com", bl.YouTubeStrict} {
		e.res.names[h] = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	}
	e.res.mu.Unlock()
	c := e.client("", "", "")
	post := func(host, body string, chunked bool) {
		t.Helper()
		var rd io.Reader = strings.NewReader(body)
		if chunked {
			rd = io.MultiReader(rd) // length unknown: sent chunked
		}
		req, _ := http.NewRequest(http.MethodPost, "http://"+host+port+"/youtubei/v1/search?prettyPrint=false", rd)
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST %s: %d", host, resp.StatusCode)
		}
		select {
		case s := <-got:
			if s.body != body || s.length >= 0 && s.length != int64(len(body)) {
				t.Errorf("POST %s: the site received %d bytes (Content-Length %d), want the %d sent", host, len(s.body), s.length, len(body))
			}
			if s.restrict != "Strict" {
				t.Errorf("POST %s: YouTube-Restrict %q", host, s.restrict)
			}
		default:
			t.Fatalf("POST %s: the origin was not reached", host)
		}
	}
	ctx := `{"context":{"client":{"clientName":"WEB","clientVersion":"2.20250101","hl":"en-GB"}},`
	for i, host := range []string{"www.youtube.com", "m.youtube.com", "music.youtube.com", "youtubei.googleapis.com"} {
		term := "how to kill myself " + strings.Repeat("x", i+1) // a term per host: not collapsed
		post(host, ctx+`"query":"`+term+`"}`, i == 1)
		ev := e.sink.waitEvent(t, func(ev reports.Event) bool { return isFlag(ev) && ev.SearchTerm == term })
		if ev.SearchEngine != "YouTube" || ev.Category != "self-harm" || ev.Severity != bl.SeverityCritical || ev.Name != host {
			t.Errorf("%s: flag event %+v", host, ev)
		}
	}
	// Not flagged: a harmless search, the next page of results (no
	// query), another endpoint, a query past the part read.
	post("www.youtube.com", ctx+`"query":"photosynthesis"}`, false)
	post("www.youtube.com", ctx+`"continuation":"4qmFsgKbAxIPRVdhdGN"}`, false)
	long := `{"context":{"pad":"` + strings.Repeat("x", maxJSONPeek) + `"},"query":"how to hurt myself"}`
	post("www.youtube.com", long, false)
	req, _ := http.NewRequest(http.MethodPost, base+"/youtubei/v1/browse", strings.NewReader(ctx+`"query":"how to hurt myself"}`))
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
		<-got
	}
	e.s.events.flush(true)
	for _, ev := range e.sink.events() {
		if isFlag(ev) && !strings.HasPrefix(ev.SearchTerm, "how to kill myself ") {
			t.Errorf("flagged %q (%s)", ev.SearchTerm, ev.URL)
		}
	}
}

// TestSearchForRestrictedSite: a search whose term is the address of a
// site on the restricted tier (typed into the search box, with or without
// a scheme, in any spelling) is that site's block: the quiet page, a
// restricted event with the entry's hash, and the term nowhere in plain
// text (it is in the search's URL too). Other searches go on.
func TestSearchForRestrictedSite(t *testing.T) {
	e := searchEnv(t)
	c := e.client("", "", "")
	for _, q := range []string{"abuse.test/dir/page.html", "HTTP://www.Abuse.TEST/%64ir/page.html", " abuse.test/dir/page.html#x "} {
		resp, body := get(t, c, e.originURL("www.google.co.uk", "/search?q="+url.QueryEscape(q)))
		if resp.StatusCode != http.StatusForbidden || strings.Contains(body, "abuse") || !strings.Contains(body, "not available") {
			t.Fatalf("search for %q: %d\n%s", q, resp.StatusCode, body)
		}
	}
	e.s.events.flush(true)
	evs := e.sink.events()
	if len(evs) == 0 {
		t.Fatal("no event")
	}
	for _, ev := range evs {
		if !ev.Restricted || ev.Action != "block" || ev.Entry != hashHex("abuse.test/dir/page.html") ||
			strings.Contains(ev.Name+ev.URL+ev.SearchTerm+ev.Note, "abuse") {
			t.Errorf("event %+v", ev)
		}
	}
	if e.hits.Load() != 0 {
		t.Error("the search reached the engine")
	}
	// Another page of the site, and words, are searched as usual.
	for _, q := range []string{"abuse.test/dir/other.html", "abuse.test", "abuse test"} {
		if resp, _ := get(t, c, e.originURL("www.google.co.uk", "/search?q="+url.QueryEscape(q))); resp.StatusCode != 200 {
			t.Errorf("search for %q: %d", q, resp.StatusCode)
		}
	}
}

// TestSafeSearchDuckDuckGoHosts: every DuckDuckGo host that serves results
// has safe search forced: the no-JavaScript pages pupils use to dodge it
// (html.duckduckgo.com/html/, lite.duckduckgo.com/lite/, kp) and the
// endpoints that return results as data to its own page
// (links.duckduckgo.com/d.js, and duckduckgo.com/i.js, v.js and news.js,
// which take p=1 for strict and ex=-1 for moderate, ex=-2 turning it off):
// the client's own values are replaced.
func TestSafeSearchDuckDuckGoHosts(t *testing.T) {
	e := searchEnv(t)
	e.res.mu.Lock()
	for _, h := range []string{"html.duckduckgo.com", "lite.duckduckgo.com", "links.duckduckgo.com"} {
		e.res.names[h] = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	}
	e.res.mu.Unlock()
	c := e.client("", "", "")
	check := func(host, path string, want map[string]string) {
		t.Helper()
		e.lastReq.Store(nil)
		get(t, c, e.originURL(host, path))
		r := e.lastReq.Load()
		if r == nil {
			t.Fatalf("%s%s: origin not reached", host, path)
		}
		q := r.URL.Query()
		for param, w := range want {
			if got := q[param]; w == "" && len(got) != 0 || w != "" && (len(got) != 1 || got[0] != w) {
				t.Errorf("%s%s: origin saw %s=%q (query %q), want %q", host, path, param, got, r.URL.RawQuery, w)
			}
		}
		if q.Get("q") != "cats" {
			t.Errorf("%s%s: origin's query %q lost the search", host, path, r.URL.RawQuery)
		}
	}
	check("html.duckduckgo.com", "/html/?q=cats&kp=-2", map[string]string{"kp": "1"})
	check("lite.duckduckgo.com", "/lite/?q=cats&kp=-2", map[string]string{"kp": "1"})
	check("links.duckduckgo.com", "/d.js?q=cats&l=us-en&ex=-2&vqd=4-1&p=-1", map[string]string{"p": "1", "ex": "", "kp": "1"})
	check("links.duckduckgo.com", "/d.js?q=cats&%65x=-2&P=-2", map[string]string{"p": "1", "ex": "", "P": "", "kp": "1"})
	check("duckduckgo.com", "/i.js?q=cats&o=json&p=-1", map[string]string{"p": "1", "kp": "1"})
	check("duckduckgo.com", "/v.js?q=cats&p=-2", map[string]string{"p": "1", "kp": "1"})
	check("duckduckgo.com", "/news.js?q=cats&p=-2", map[string]string{"p": "1", "kp": "1"})

	e.editGroup("students", func(g *config.Group) { g.SafeSearch = "moderate" })
	check("html.duckduckgo.com", "/html/?q=cats&kp=-2", map[string]string{"kp": "-1"})
	check("links.duckduckgo.com", "/d.js?q=cats&ex=-2&vqd=4-1", map[string]string{"ex": "-1", "p": "", "kp": "-1"})
	check("duckduckgo.com", "/i.js?q=cats&p=-1", map[string]string{"p": "1", "kp": "-1"}) // moderate hides explicit images

	e.editGroup("students", func(g *config.Group) { g.SafeSearch = "off" })
	check("links.duckduckgo.com", "/d.js?q=cats&ex=-2", map[string]string{"ex": "-2"})
}
