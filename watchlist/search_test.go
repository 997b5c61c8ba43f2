package watchlist

import (
	"net/url"
	"testing"
)

func TestEnginesLookup(t *testing.T) {
	tab, err := NewEngines(DefaultEngines())
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]string{
		"www.google.com": "Google", "google.co.uk": "Google", "www.google.com.au": "Google", "google.de": "Google",
		"www.bing.com": "Bing", "duckduckgo.com": "DuckDuckGo", "html.duckduckgo.com": "DuckDuckGo",
		"www.youtube.com": "YouTube", "m.youtube.com": "YouTube", "youtubei.googleapis.com": "YouTube", "www.youtube-nocookie.com": "YouTube",
		"storage.googleapis.com": "", "uk.search.yahoo.com": "Yahoo",
		"www.ecosia.org": "Ecosia", "en.wikipedia.org": "Wikipedia", "en.m.wikipedia.org": "Wikipedia",
		"example.com": "", "google.example.com": "", "notgoogle.com": "", "bing.com.evil.net": "", "yahoo.com": "", "com": "", "": "",
	} {
		e, ok := tab.Lookup(host)
		got := ""
		if ok {
			got = e.Name
		}
		if got != want {
			t.Errorf("Lookup(%q) = %q, want %q", host, got, want)
		}
	}
}

func TestEngineTerm(t *testing.T) {
	tab, _ := NewEngines(DefaultEngines())
	for raw, want := range map[string]string{
		"http://www.google.co.uk/search?q=how+to+kill+myself&hl=en":          "how to kill myself",
		"http://www.bing.com/search?form=QBLH&q=k1ll%20mys3lf":               "k1ll mys3lf",
		"http://duckduckgo.com/?q=where+to+buy+weed&t=h_":                    "where to buy weed",
		"http://www.youtube.com/results?search_query=how+to+vape":            "how to vape",
		"http://search.yahoo.com/search?p=caf%C3%A9":                         "café",
		"http://www.ecosia.org/search?method=index&q=tree":                   "tree",
		"http://en.wikipedia.org/w/index.php?search=Photosynthesis":          "Photosynthesis",
		"http://en.wikipedia.org/wiki/Special:Search?search=x&go=Go":         "x",
		"http://search.yahoo.com/search;_ylt=AwrFQ;_ylu=Y29sbwNiZjEE?p=cats": "cats", // Yahoo's result links
		"http://www.google.com/maps?q=london":                                "",     // not a search path
		"http://www.google.com/search?hl=en":                                 "",     // no term
		"http://www.google.com/search?q=+++":                                 "",
	} {
		u, _ := url.Parse(raw)
		e, ok := tab.Lookup(u.Hostname())
		if !ok {
			t.Fatalf("%s: no engine", raw)
		}
		if got, _ := e.Term(u.EscapedPath(), u.RawQuery); got != want {
			t.Errorf("%s: term %q, want %q", raw, got, want)
		}
	}
	long := make([]byte, 0, 3*MaxTerm)
	for len(long) < 2*MaxTerm {
		long = append(long, "é"...)
	}
	e, _ := tab.Lookup("google.com")
	got, _ := e.Term("/search", "q="+url.QueryEscape(string(long)))
	if len(got) > MaxTerm || len(got) < MaxTerm-1 {
		t.Errorf("long term cut to %d bytes", len(got))
	}
}

// TestEngineSearchPath: a search path is matched in the canonical form
// servers read it in (path parameters, dot segments, repeated slashes,
// case, a final slash), for every engine; a path that only starts like
// one is not.
func TestEngineSearchPath(t *testing.T) {
	tab, _ := NewEngines(DefaultEngines())
	for _, tc := range []struct {
		host, path string
		want       bool
	}{
		{"search.yahoo.com", "/search", true},
		{"search.yahoo.com", "/search;_ylt=AwrFQ;_ylu=Y29sbwNiZjEE", true},
		{"search.yahoo.com", "/search/images;_ylt=x", true},
		{"www.google.com", "/search;x=1", true},
		{"www.google.com", "//search", true},
		{"www.google.com", "/maps/../search", true},
		{"www.google.com", "/%73earch", true},
		{"www.google.com", "/webhp/", true},
		{"www.bing.com", "/images/./search", true},
		{"duckduckgo.com", "", true}, // an absolute URL with no path asks for /
		{"duckduckgo.com", "/html;x/", true},
		{"www.youtube.com", "/RESULTS", true},
		{"en.wikipedia.org", "/wiki/special:search", true},
		{"www.ecosia.org", "/search/", true},
		{"www.google.com", "/searchx", false},
		{"www.google.com", "/search%3Bx", false}, // an encoded ';' is part of the name
		{"www.google.com", "/search/x", false},
		{"www.google.com", "/maps", false},
		{"search.yahoo.com", "/", false},
	} {
		e, ok := tab.Lookup(tc.host)
		if !ok {
			t.Fatalf("%s: no engine", tc.host)
		}
		if got := e.SearchPath(tc.path); got != tc.want {
			t.Errorf("%s %q: SearchPath %v, want %v", tc.host, tc.path, got, tc.want)
		}
	}
	// An engine made without NewEngines (its paths not yet canonical).
	if e := (&Engine{Paths: []string{"/Find/"}}); !e.SearchPath("/find;x") || e.SearchPath("/finder") {
		t.Error("an Engine made by hand: its paths not compared canonically")
	}
	y, _ := tab.Lookup("search.yahoo.com")
	if n := testing.AllocsPerRun(100, func() { y.SearchPath("/search;_ylt=AwrFQ;_ylu=Y29sbwNiZjEE") }); n != 0 {
		t.Errorf("SearchPath: %v allocations", n)
	}
}

// TestEngineJSONTerm: YouTube's searches POSTed as JSON to
// /youtubei/v1/search carry the term in the top-level "query" field.
func TestEngineJSONTerm(t *testing.T) {
	tab, _ := NewEngines(DefaultEngines())
	yt, _ := tab.Lookup("music.youtube.com")
	for _, tc := range []struct {
		path string
		want bool
	}{
		{"/youtubei/v1/search", true},
		{"/youtubei/v1/search/", true},
		{"/youtubei/v1/search;x", true},
		{"//youtubei/v1/./search", true},
		{"/youtubei/v1/browse", false},
		{"/youtubei/v1/search/x", false},
		{"/results", false},
	} {
		if got := yt.JSONPath(tc.path); got != tc.want {
			t.Errorf("JSONPath(%q) = %v, want %v", tc.path, got, tc.want)
		}
	}
	if g, _ := tab.Lookup("www.google.com"); g.JSONPath("/youtubei/v1/search") {
		t.Error("Google has JSON search paths")
	}
	ctx := `"context":{"client":{"clientName":"WEB","clientVersion":"2.20250101","query":"nested"}}`
	for body, want := range map[string]string{
		`{` + ctx + `,"query":"how to kill myself"}`:        "how to kill myself",
		`{"query":"caf\u00e9   cats",` + ctx + `}`:          "café cats",
		` { "query" : "cats" , "params" : "EgIQAQ%3D%3D" }`: "cats",
		`{"query":"cats","query":"kill myself"}`:            "cats kill myself", // every copy
		`{"query":"cats",` + ctx[:40]:                       "cats",             // the start of a longer body
		`{` + ctx[:40]:                                      "",
		`{` + ctx + `,"continuation":"4qmFsgK"}`:            "", // the next page: no query
		`{"query":5}`:                                       "",
		`{"query":["cats"]}`:                                "",
		`{"query":""}`:                                      "",
		`[{"query":"cats"}]`:                                "",
		"\x0a\x04cats":                                      "", // not JSON (an app's protobuf)
		"":                                                  "",
	} {
		got, ok := yt.JSONTerm([]byte(body))
		if got != want || ok != (want != "") {
			t.Errorf("%s: term %q %v, want %q", body, got, ok, want)
		}
	}
}

// TestQueryTermEveryCopy: a query that names the term's parameter more
// than once is read whole, every copy joined, as JSONTerm reads a JSON
// body: which copy an engine searches for is its server's choice
// (MediaWiki, in PHP, takes the last; others the first), so a harmless
// first copy ("search=cats&search=how+to+kill+myself") must not hide
// the term the engine searches for.
func TestQueryTermEveryCopy(t *testing.T) {
	tab, _ := NewEngines(DefaultEngines())
	for raw, want := range map[string]string{
		"http://en.wikipedia.org/w/index.php?search=cats&search=how+to+kill+myself": "cats how to kill myself",
		"http://www.google.com/search?q=weather&hl=en&Q=kill+myself":                "weather kill myself",
		"http://www.google.com/search?q=&q=kill+myself&q=":                          "kill myself",
		"http://www.google.com/search?q=cats&q=cats":                                "cats",             // a repeat once
		"http://www.google.com/search?as_q=cats&as_epq=kill+myself":                 "cats kill myself", // no q: the alternatives, joined
		"http://www.google.com/search?q=cats&as_q=kill+myself":                      "cats",             // q wins over them
	} {
		u, _ := url.Parse(raw)
		e, _ := tab.Lookup(u.Hostname())
		if got, _ := e.Term(u.EscapedPath(), u.RawQuery); got != want {
			t.Errorf("%s: term %q, want %q", raw, got, want)
		}
	}
}

// TestTermStrayPercent: a '%' that starts no escape is kept as it is and
// the rest of the value still decoded, as a server decodes it (PHP's
// urldecode, which MediaWiki reads its parameters with, does so), so one
// stray '%' cannot leave the whole term undecoded and unmatched.
func TestTermStrayPercent(t *testing.T) {
	tab, _ := NewEngines(DefaultEngines())
	for raw, want := range map[string]string{
		"http://www.google.com/search?q=%6Bill%20myself%":                 "kill myself%",
		"http://en.wikipedia.org/w/index.php?search=kill+myself+100%25+%": "kill myself 100% %",
		"http://www.bing.com/search?q=%zzhow+to+kill+myself":              "%zzhow to kill myself",
		"http://www.google.com/search?q=caf%C3%A9+%E2%82":                 "café \ufffd",
		"http://www.google.com/search?q=50%+off":                          "50% off",
	} {
		u, _ := url.Parse(raw)
		e, _ := tab.Lookup(u.Hostname())
		if got, _ := e.Term(u.EscapedPath(), u.RawQuery); got != want {
			t.Errorf("%s: term %q, want %q", raw, got, want)
		}
	}
}

func TestSafeQuery(t *testing.T) {
	tab, _ := NewEngines(DefaultEngines())
	g, _ := tab.Lookup("www.google.com")
	got, ok := g.SafeQuery("q=cats&safe=off&sa%66e=images&hl=en", true)
	if !ok || got != "q=cats&hl=en&safe=active" {
		t.Errorf("google: %q %v", got, ok)
	}
	b, _ := tab.Lookup("bing.com")
	if got, _ := b.SafeQuery("q=x&adlt=off", false); got != "q=x&adlt=moderate" {
		t.Errorf("bing moderate: %q", got)
	}
	d, _ := tab.Lookup("duckduckgo.com")
	if got, _ := d.SafeQuery("", true); got != "kp=1" {
		t.Errorf("ddg: %q", got)
	}
	// Copies after a ';' (servers that split on it too) and in another
	// case are dropped; the search itself stays.
	if got, _ := d.SafeQuery("q=cats;kp=-2&KP=-2&x=1;%6b%50=-2;y=2", true); got != "q=cats&x=1;y=2&kp=1" {
		t.Errorf("ddg with ';' and case: %q", got)
	}
	y, _ := tab.Lookup("search.yahoo.com")
	if got, _ := y.SafeQuery("p=x", true); got != "p=x&vm=r" {
		t.Errorf("yahoo: %q", got)
	}
	yt, _ := tab.Lookup("www.youtube.com")
	if _, ok := yt.SafeQuery("search_query=x", true); ok {
		t.Error("youtube has a safe parameter")
	}
	if h, v := yt.SafeHeader(false); h != "YouTube-Restrict" || v != "Moderate" {
		t.Errorf("youtube header %q: %q", h, v)
	}
}

func TestNewEnginesErrors(t *testing.T) {
	for _, e := range []Engine{
		{Name: "x", Hosts: []string{"x.com"}, Paths: []string{"/s"}},
		{Name: "x", Hosts: []string{"*.x.com"}, Paths: []string{"/s"}, Param: "q"},
		{Name: "x", Hosts: []string{"x.com"}, Paths: []string{"s"}, Param: "q"},
		{Name: "x", Hosts: []string{"localhost"}, Paths: []string{"/s"}, Param: "q"},
		{Name: "x", Hosts: []string{"x.com"}, Paths: []string{"/s"}, Param: "q", JSONPaths: []string{"/api/search"}},
		{Name: "x", Hosts: []string{"x.com"}, Paths: []string{"/s"}, Param: "q", JSONPaths: []string{"api"}, JSONField: "q"},
	} {
		if _, err := NewEngines([]Engine{e}); err == nil {
			t.Errorf("%+v: no error", e)
		}
	}
}

func BenchmarkLookupMiss(b *testing.B) {
	tab, _ := NewEngines(DefaultEngines())
	b.ReportAllocs()
	for b.Loop() {
		tab.Lookup("static.assets.example-cdn.co.uk")
	}
}
