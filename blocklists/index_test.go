package blocklists

import (
	"crypto/sha256"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
)

type testEntry struct {
	name string
	mode Mode
}

func buildIndex(t testing.TB, lists map[string]struct {
	cat     Category
	entries []testEntry
}) *Index {
	t.Helper()
	b := NewBuilder(0)
	for _, name := range sortedKeys(lists) {
		l := lists[name]
		_, sink, err := b.AddList(ListInfo{Name: name, Category: l.cat})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range l.entries {
			sink.Domain([]byte(e.name), e.mode)
		}
	}
	ix, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := range keys {
		for j := i + 1; j < len(keys); j++ {
			if keys[j] < keys[i] {
				keys[i], keys[j] = keys[j], keys[i]
			}
		}
	}
	return keys
}

type listSpec = struct {
	cat     Category
	entries []testEntry
}

func TestIndexLookup(t *testing.T) {
	ix := buildIndex(t, map[string]listSpec{
		"adult": {Pornography, []testEntry{{"porn.example", ModeSubtree}, {"exact.example", ModeExact}}},
		"games": {Games, []testEntry{{"games.example", ModeSubtree}, {"porn.example", ModeSubtree}}},
		"ads": {Malware, []testEntry{
			{"bad.example", ModeSubtree},
			{"good.bad.example", ModeExceptSubtree},
			{"only.bad.example", ModeExceptExact},
		}},
		"tld": {Gambling, []testEntry{{"bet", ModeSubtree}}},
	})
	tests := []struct {
		name string
		want CategorySet
	}{
		{"porn.example", SetOf(Pornography, Games)},
		{"www.porn.example", SetOf(Pornography, Games)},
		{"a.b.c.porn.example", SetOf(Pornography, Games)},
		{"notporn.example", 0},
		{"example", 0},
		{"exact.example", SetOf(Pornography)},
		{"www.exact.example", 0},
		{"games.example", SetOf(Games)},
		{"bad.example", SetOf(Malware)},
		{"x.bad.example", SetOf(Malware)},
		{"good.bad.example", 0},
		{"x.good.bad.example", 0},
		{"only.bad.example", 0},
		{"x.only.bad.example", SetOf(Malware)},
		{"casino.bet", SetOf(Gambling)},
		{"bet", SetOf(Gambling)},
		{"", 0},
	}
	for _, tt := range tests {
		if got := ix.Lookup(tt.name); got != tt.want {
			t.Errorf("Lookup(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
	m, ok := ix.Explain("www.porn.example", SetOf(Games))
	if !ok || m.Entry != "porn.example" || ix.List(m.List).Name != "games" || m.Category != Games {
		t.Errorf("Explain games = %+v %v", m, ok)
	}
	if _, ok := ix.Explain("www.exact.example", SetOf(Pornography)); ok {
		t.Error("Explain matched an exact entry for a subdomain")
	}
	if st := ix.Stats(); st.Domains != 7 {
		t.Errorf("Stats().Domains = %d, want 7", st.Domains)
	}
}

func TestIndexURLsAndIPs(t *testing.T) {
	b := NewBuilder(0)
	_, s, _ := b.AddList(ListInfo{Name: "urls", Category: Phishing})
	s.URL([]byte("example.com/login"), false)
	s.URL([]byte("files.example.org"), false)
	_, ips, _ := b.AddList(ListInfo{Name: "doh-ips", Category: DoH})
	ips.Prefix(netip.MustParsePrefix("1.1.1.1/32"))
	ips.Prefix(netip.MustParsePrefix("9.9.9.0/24"))
	ips.Prefix(netip.MustParsePrefix("2606:4700:4700::1111/128"))
	ips.Prefix(netip.MustParsePrefix("::ffff:8.8.8.8/128"))
	ix, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		host, path string
		want       CategorySet
	}{
		{"example.com", "/login", SetOf(Phishing)},
		{"example.com", "/login/form?x=1", SetOf(Phishing)},
		{"sub.example.com", "/login", SetOf(Phishing)},
		{"example.com", "/", 0},
		{"example.com", "/logout", 0},
		{"files.example.org", "/anything", SetOf(Phishing)},
	} {
		if got := ix.LookupURL(tt.host, tt.path); got != tt.want {
			t.Errorf("LookupURL(%q, %q) = %v, want %v", tt.host, tt.path, got, tt.want)
		}
	}
	if m, ok := ix.ExplainURL("example.com", "/login/x", SetOf(Phishing)); !ok || m.Entry != "example.com/login" {
		t.Errorf("ExplainURL = %+v %v", m, ok)
	}
	for _, tt := range []struct {
		ip   string
		want CategorySet
	}{
		{"1.1.1.1", SetOf(DoH)}, {"1.1.1.2", 0}, {"9.9.9.9", SetOf(DoH)}, {"9.9.10.1", 0},
		{"2606:4700:4700::1111", SetOf(DoH)}, {"::ffff:1.1.1.1", SetOf(DoH)}, {"8.8.8.8", SetOf(DoH)},
		// IPv6 spellings that carry a listed IPv4 address: NAT64, 6to4,
		// IPv4-compatible; and ones that carry none.
		{"64:ff9b::9.9.9.9", SetOf(DoH)}, {"64:ff9b::101:101", SetOf(DoH)}, {"2002:909:909::1", SetOf(DoH)},
		{"::9.9.9.9", SetOf(DoH)}, {"64:ff9b::101:102", 0}, {"2002:101:102::", 0}, {"::1", 0}, {"::", 0},
		// Local-use NAT64 (RFC 8215): the /48 layout of RFC 6052 (bits
		// 64-71, "u", skipped; u and the suffix zero) carries one; other
		// layouts are the network's choice and carry none here.
		{"64:ff9b:1:909:9:900::", SetOf(DoH)}, {"64:ff9b:1:101:1:100::", SetOf(DoH)}, {"64:ff9b:1:101:1:200::", 0},
		{"64:ff9b:1::101:101", 0}, {"64:ff9b:1:101:101:100::", 0}, {"64:ff9b:1:101:1:100:0:1", 0},
	} {
		if got := ix.LookupIP(netip.MustParseAddr(tt.ip)); got != tt.want {
			t.Errorf("LookupIP(%s) = %v, want %v", tt.ip, got, tt.want)
		}
	}
	for _, a := range []string{"9.9.9.9", "64:ff9b::909:909", "2002:909:909::", "64:ff9b:1:909:9:900::"} {
		if m, ok := ix.ExplainIP(netip.MustParseAddr(a), SetOf(DoH)); !ok || m.Entry != "9.9.9.0/24" {
			t.Errorf("ExplainIP(%s) = %+v %v", a, m, ok)
		}
	}
}

func TestIndexHashed(t *testing.T) {
	b := NewBuilder(0)
	_, s, _ := b.AddList(ListInfo{Name: "iwf", Category: IWF, Restricted: true, Format: FormatSHA256})
	s.Hash(sha256Of("abuse.example"))
	s.Hash(sha256Of("host.example/path/page.html"))
	s.Hash(sha256Of("host.example/gallery.php?id=5"))
	ix, _ := b.Build()
	if got := ix.Lookup("www.abuse.example"); got != SetOf(IWF) {
		t.Errorf("hashed host: got %v", got)
	}
	if got := ix.Lookup("host.example"); got != 0 {
		t.Errorf("URL hash matched a bare host: %v", got)
	}
	if got := ix.LookupURL("host.example", "/path/page.html"); got != SetOf(IWF) {
		t.Errorf("hashed URL: got %v", got)
	}
	if got := ix.LookupURL("host.example", "/path/other.html"); got != 0 {
		t.Errorf("hashed URL matched another page: %v", got)
	}
	// Path parameters: Java servers (Tomcat, Jetty) serve /page.html;x as
	// /page.html, and a plain entry matches it as a prefix; a hashed one
	// must too. Not a longer name, though.
	for _, p := range []string{"/path/page.html;jsessionid=1", "/path/page.html;x/y", "/path/page.html/sub"} {
		if got := ix.LookupURL("host.example", p); got != SetOf(IWF) {
			t.Errorf("hashed URL with %s: got %v", p, got)
		}
	}
	if got := ix.LookupURL("host.example", "/path/page.htmlx"); got != 0 {
		t.Errorf("hashed URL matched a longer name: %v", got)
	}
	if e := ix.hashedURLEntry("host.example", "/path/page.html;x", SetOf(IWF)); e != "host.example/path/page.html" {
		t.Errorf("hashedURLEntry = %q", e)
	}
	// An entry with a query: more parameters before or after it do not
	// dodge it (a site reads them in any order; a plain entry is a prefix
	// too), however many; another value does not match.
	for p, want := range map[string]CategorySet{"/gallery.php?id=5": SetOf(IWF), "/gallery.php?id=5&x=1": SetOf(IWF),
		"/gallery.php?id=5&": SetOf(IWF), "/gallery.php?id=55": 0, "/gallery.php?x=1&id=5": SetOf(IWF), "/gallery.php&id=5": 0,
		"/gallery.php?a=1&b=2&c=3&d=4&e=5&f=6&g=7&id=5&h=8": SetOf(IWF), "/gallery.php?x=1&id=55": 0, "/other.php?x=1&id=5": 0} {
		if got := ix.LookupURL("host.example", p); got != want {
			t.Errorf("hashed URL with a query, %s: got %v, want %v", p, got, want)
		}
	}
	for _, p := range []string{"/gallery.php?id=5&x=1", "/gallery.php?x=1&id=5"} {
		if e := ix.hashedURLEntry("host.example", p, SetOf(IWF)); e != "host.example/gallery.php?id=5" {
			t.Errorf("hashedURLEntry(%s) = %q", p, e)
		}
	}
	// The entry a match is recorded by, also when the host had a www.
	if e := ix.hashedURLEntry("www.host.example", "/path/page.html", SetOf(IWF)); e != "host.example/path/page.html" {
		t.Errorf("hashedURLEntry without www. = %q", e)
	}
	// Hashed names are Lookup's (policy asks both): LookupURL hashes only
	// host/path prefixes, so no name is hashed twice per decision.
	if got := ix.LookupURL("www.abuse.example", "/any"); got != 0 {
		t.Errorf("LookupURL matched a hashed name: %v", got)
	}
}

// TestIndexHashedDirectory: a hashed entry for a directory ("host/dir/",
// or "host/" for the whole site) covers every page under it, as a plain
// entry's prefix does; not a longer name beside it.
func TestIndexHashedDirectory(t *testing.T) {
	b := NewBuilder(0)
	_, s, _ := b.AddList(ListInfo{Name: "iwf", Category: IWF, Restricted: true, Format: FormatSHA256})
	s.Hash(sha256Of("dir.example/gallery/"))
	s.Hash(sha256Of("front.example/"))
	ix, _ := b.Build()
	for _, tc := range []struct {
		host, path string
		want       CategorySet
	}{
		{"dir.example", "/gallery/", SetOf(IWF)},
		{"dir.example", "/gallery/img1.jpg", SetOf(IWF)},
		{"www.dir.example", "/gallery/sub/x.jpg?id=1", SetOf(IWF)},
		{"dir.example", "/gallery/?page=2", SetOf(IWF)},
		{"dir.example", "/gallery", 0},
		{"dir.example", "/galleryx/a.jpg", 0},
		{"dir.example", "/other/gallery/a.jpg", 0},
		{"front.example", "/", SetOf(IWF)},
		{"front.example", "/any/page.html?x=1", SetOf(IWF)},
		{"www.front.example", "/a", SetOf(IWF)},
		{"sub.front.example", "/a", 0}, // a URL entry names its host (and www.)
	} {
		if got := ix.LookupURL(tc.host, tc.path); got != tc.want {
			t.Errorf("%s%s: got %v, want %v", tc.host, tc.path, got, tc.want)
		}
	}
	if e := ix.hashedURLEntry("dir.example", "/gallery/sub/x.jpg", SetOf(IWF)); e != "dir.example/gallery/" {
		t.Errorf("hashedURLEntry = %q", e)
	}
}

// TestIndexManyNames checks the hash table against a map for many names,
// including names that are only parents or children of entries.
func TestIndexManyNames(t *testing.T) {
	b := NewBuilder(0)
	_, s, _ := b.AddList(ListInfo{Name: "a", Category: Gambling})
	const n = 200_000
	for i := range n {
		s.Domain(fmt.Appendf(nil, "site%d.example%d.com", i, i%7), ModeSubtree)
	}
	ix, _ := b.Build()
	for i := range n {
		if ix.Lookup(fmt.Sprintf("www.site%d.example%d.com", i, i%7)) != SetOf(Gambling) {
			t.Fatalf("entry %d missing", i)
		}
		if ix.Lookup(fmt.Sprintf("site%d.example%d.com", i, (i+1)%7)) != 0 {
			t.Fatalf("false positive for %d", i)
		}
	}
}

// TestSwapUnderLoad rebuilds and swaps indexes while readers look names up;
// every reader must see either the old or the new index in full. Run with
// -race.
func TestSwapUnderLoad(t *testing.T) {
	build := func(gen int) *Index {
		b := NewBuilder(0)
		_, s, _ := b.AddList(ListInfo{Name: fmt.Sprint("gen", gen), Category: Gambling})
		for i := range 20_000 {
			s.Domain(fmt.Appendf(nil, "g%d-%d.example", gen, i), ModeSubtree)
		}
		_, s2, _ := b.AddList(ListInfo{Name: "marker", Category: Games})
		s2.Domain(fmt.Appendf(nil, "marker%d.example", gen), ModeSubtree)
		ix, err := b.Build()
		if err != nil {
			t.Error(err)
		}
		return ix
	}
	var cur atomic.Pointer[Index]
	var gen atomic.Int64
	cur.Store(build(0))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var checks atomic.Int64
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				ix := cur.Load()
				g := ix.Lists()[0].Name[3:]
				// A complete index has its generation's marker and every entry.
				if ix.Lookup("marker"+g+".example") != SetOf(Games) || ix.Lookup("g"+g+"-19999.example") != SetOf(Gambling) {
					t.Errorf("reader saw a partial index (generation %s)", g)
					return
				}
				checks.Add(1)
			}
		}()
	}
	for g := 1; g <= 10; g++ {
		cur.Store(build(g))
		gen.Store(int64(g))
	}
	close(stop)
	wg.Wait()
	if checks.Load() == 0 {
		t.Fatal("readers made no checks")
	}
}

func sha256Of(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// BenchmarkLookupHashedURL is what a policy decision for a plain-HTTP URL
// costs the hashed (IWF-style) part of the index: the name and its
// parents, then the host/path prefixes, each hashed once.
func BenchmarkLookupHashedURL(b *testing.B) {
	bd := NewBuilder(0)
	_, s, _ := bd.AddList(ListInfo{Name: "iwf", Category: IWF, Restricted: true, Format: FormatSHA256})
	for i := range 1000 {
		s.Hash(sha256Of(fmt.Sprintf("abuse%d.example", i)))
		s.Hash(sha256Of(fmt.Sprintf("host%d.example/path/page.html", i)))
	}
	ix, _ := bd.Build()
	b.ReportAllocs()
	for b.Loop() {
		var tr Trace
		if ix.LookupTrace("images.cdn.news.example", &tr)|ix.LookupURL("images.cdn.news.example", "/2026/11/photo.jpg?w=640") != 0 {
			b.Fatal("matched")
		}
	}
}

// TestLookupSite: the URL entries a name alone is blocked by are those
// LookupURL matches for every page of the site: a bare host or host/ (on
// the host and its subdomains, as LookupURL matches them), and a hashed
// host/ on the host as asked and without "www." (no subdomain: hashedURL
// tries none). An entry with a path or a query is not one.
func TestLookupSite(t *testing.T) {
	for _, tt := range []struct {
		plain, hashed, host string
		want                CategorySet
	}{
		{"site.example", "x", "site.example", SetOf(Phishing)},
		{"site.example", "x", "a.b.site.example", SetOf(Phishing)},
		{"www.site.example/", "x", "site.example", SetOf(Phishing)},
		{"http://site.example:8080/?", "x", "www.site.example", SetOf(Phishing)},
		{"site.example/x", "x", "site.example", 0},
		{"site.example/?a=1", "x", "site.example", 0},
		{"other.example", "x", "site.example", 0},
		{"other.example", "site.example/", "site.example", SetOf(IWF)},
		{"other.example", "site.example/", "www.site.example", SetOf(IWF)},
		{"other.example", "www.site.example/", "www.site.example", SetOf(IWF)},
		{"other.example", "site.example/", "a.site.example", 0},
		{"other.example", "site.example/a", "site.example", 0},
	} {
		ix := canonIndex(t, tt.plain, tt.hashed)
		if got := ix.LookupSite(tt.host); got != tt.want {
			t.Errorf("entries %q, hashed %q: LookupSite(%s) = %v, want %v", tt.plain, tt.hashed, tt.host, got, tt.want)
		}
		if got := ix.LookupURL(tt.host, "/"); got != tt.want {
			t.Errorf("entries %q, hashed %q: LookupURL(%s, /) = %v, LookupSite's %v", tt.plain, tt.hashed, tt.host, got, tt.want)
		}
	}
	var ix *Index
	if ix.LookupSite("site.example") != 0 {
		t.Error("nil index")
	}
}

// BenchmarkLookupHashedName is what a policy decision for a name alone (a
// DNS query, a CONNECT) costs the hashed part of the index: the name and
// its parents, then host/ (as asked and without "www.") for a URL entry
// of the whole site, each hashed once.
func BenchmarkLookupHashedName(b *testing.B) {
	bd := NewBuilder(0)
	_, s, _ := bd.AddList(ListInfo{Name: "iwf", Category: IWF, Restricted: true, Format: FormatSHA256})
	for i := range 1000 {
		s.Hash(sha256Of(fmt.Sprintf("abuse%d.example", i)))
		s.Hash(sha256Of(fmt.Sprintf("host%d.example/", i)))
	}
	ix, _ := bd.Build()
	for _, host := range []string{"news.example", "www.news.example"} {
		b.Run(host, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var tr Trace
				if ix.LookupTrace(host, &tr)|ix.LookupSite(host) != 0 {
					b.Fatal("matched")
				}
			}
		})
	}
}

// TestURLAllowBoundary: an allow list matches a URL entry only at a
// boundary of the request's canonical path (equal, or going on with '/',
// '?' or ';'; for an entry with a query, its query going on with '&' and
// none of its parameters named again), while a block list keeps matching every path the entry is a prefix of.
func TestURLAllowBoundary(t *testing.T) {
	b := NewBuilder(0)
	_, s, _ := b.AddList(ListInfo{Name: "allow", Category: FirstListBit})
	for _, e := range []string{"example.com/edu", "example.com/docs/", "youtube.com/watch?v=abc", "yt.example/w?a=1&", "bare.example"} {
		hp, err := NormalizeURL(e)
		if err != nil {
			t.Fatal(err)
		}
		if e == "bare.example" {
			hp = e // a URL list's bare host: a rule with no path
		}
		s.URL([]byte(hp), false)
	}
	ix, _ := b.Build()
	all := SetOf(FirstListBit)
	for _, tt := range []struct {
		host, path      string
		prefix, bounded bool
	}{
		{"example.com", "/edu", true, true},
		{"www.example.com", "/edu/", true, true},
		{"example.com", "/edu/maths", true, true},
		{"example.com", "/edu?x=1", true, true},
		{"example.com", "/edu;x", true, true},
		{"example.com", "/education-adult-stuff", true, false},
		{"example.com", "/edux", true, false},
		{"example.com", "/ed", false, false},
		{"example.com", "/docs/", true, true},
		{"example.com", "/docs/a", true, true},
		{"example.com", "/docs", false, false},
		{"youtube.com", "/watch?v=abc", true, true},
		{"youtube.com", "/watch?v=abc&t=10", true, true},
		{"youtube.com", "/watch?v=abcdef", true, false},
		{"youtube.com", "/watch?v=abc%26t=1", true, false},
		{"youtube.com", "/watch?v=abc/x", true, false},
		{"youtube.com", "/watch", false, false},
		{"yt.example", "/w?a=1&b=2", true, true},
		// A parameter of the entry's named again: sites read the last.
		{"youtube.com", "/watch?v=abc&v=xyz", true, false},
		{"youtube.com", "/watch?v=abc&t=1&V=xyz", true, false},
		{"youtube.com", "/watch?v=abc&v", true, false},
		{"youtube.com", "/watch?v=abc&vv=1&t=v", true, true},
		{"yt.example", "/w?a=1&a=2", true, false},
		{"bare.example", "/anything?at=all", true, true},
	} {
		path := string(AppendCanonicalPath(nil, tt.path))
		wantP, wantB := CategorySet(0), CategorySet(0)
		if tt.prefix {
			wantP = all
		}
		if tt.bounded {
			wantB = all
		}
		p, bd := ix.LookupURLBounded(tt.host, path)
		if p != wantP || bd != wantB {
			t.Errorf("LookupURLBounded(%s%s) = %v, %v; want %v, %v", tt.host, path, p, bd, wantP, wantB)
		}
		if got := ix.LookupURL(tt.host, path); got != wantP {
			t.Errorf("LookupURL(%s%s) = %v, want %v (block lists match by prefix)", tt.host, path, got, wantP)
		}
		if got := ix.LookupAllowURL(tt.host, path); got != wantB {
			t.Errorf("LookupAllowURL(%s%s) = %v, want %v", tt.host, path, got, wantB)
		}
		if _, ok := ix.ExplainAllowURL(tt.host, path, all); ok != tt.bounded {
			t.Errorf("ExplainAllowURL(%s%s) = %v, want %v", tt.host, path, ok, tt.bounded)
		}
		if _, ok := ix.ExplainURL(tt.host, path, all); ok != tt.prefix {
			t.Errorf("ExplainURL(%s%s) = %v, want %v", tt.host, path, ok, tt.prefix)
		}
	}
}
