package blocklists

import (
	"crypto/sha256"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func TestParseURLIPv4(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want string // "" = not an IPv4 host; "err" = ends in a number but invalid
	}{
		{"192.168.1.1", "192.168.1.1"},
		{"3232235777", "192.168.1.1"},
		{"0xC0A80101", "192.168.1.1"},
		{"0xc0.0xa8.1.1", "192.168.1.1"},
		{"0300.0250.01.01", "192.168.1.1"},
		{"192.168.257", "192.168.1.1"},
		{"192.11010305", "192.168.1.1"},
		{"192.0x00A80001", "192.168.0.1"},
		{"192.168.1.1.", "192.168.1.1"},
		{"0X7f.1", "127.0.0.1"},
		{"0x", "0.0.0.0"},
		{"0", "0.0.0.0"},
		{"4294967295", "255.255.255.255"},
		{"4294967296", "err"},
		{"99999999999999999999999", "err"},
		{"1.2.3.256", "err"},
		{"256.1.1.1", "err"},
		{"1.2.3.4.5", "err"},
		{"1..2.3", "err"},
		{"09", "err"},
		{"0x1g", ""}, // not a number: a name
		{"foo.123", "err"},
		{"foo.0x1f", "err"},
		{"example.com", ""},
		{"123.example", ""},
		{"1.2.3.4x", ""},
		{".", ""},
	} {
		a, v4, err := ParseURLIPv4(tt.in)
		switch tt.want {
		case "":
			if v4 {
				t.Errorf("ParseURLIPv4(%q) = %v, %v, %v; want not IPv4", tt.in, a, v4, err)
			}
		case "err":
			if !v4 || err == nil {
				t.Errorf("ParseURLIPv4(%q) = %v, %v, %v; want an invalid IPv4 host", tt.in, a, v4, err)
			}
		default:
			if !v4 || err != nil || a.String() != tt.want {
				t.Errorf("ParseURLIPv4(%q) = %v, %v, %v; want %s", tt.in, a, v4, err, tt.want)
			}
		}
	}
}

// FuzzParseURLIPv4 checks the URL-standard parser against netip for the
// dotted-decimal case: whatever netip reads as IPv4, the parser reads the
// same, and four plain decimal parts netip rejects are rejected too.
func FuzzParseURLIPv4(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "255.255.255.255", "0.0.0.0", "01.2.3.4", "1.2.3", "256.1.1.1", "1.2.3.4.", "0x1.2.3.4", "3232235777", "1.2.3.-4", "1.2.3.+4", "１.2.3.4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, v4, err := ParseURLIPv4(s)
		if v4 && err == nil && !a.Is4() {
			t.Fatalf("ParseURLIPv4(%q) = %v: not IPv4", s, a)
		}
		n, nerr := netip.ParseAddr(s)
		if nerr == nil && n.Is4() {
			if !v4 || err != nil || a != n {
				t.Fatalf("ParseURLIPv4(%q) = %v, %v, %v; netip reads %v", s, a, v4, err, n)
			}
			return
		}
		if v4 && err == nil && plainDotted(s) {
			t.Fatalf("ParseURLIPv4(%q) = %v; netip rejects it (%v)", s, a, nerr)
		}
	})
}

// plainDotted reports four decimal parts without leading zeros.
func plainDotted(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return false
	}
	for _, p := range parts {
		if p == "" || !allDigitsString(p) || (len(p) > 1 && p[0] == '0') {
			return false
		}
	}
	return true
}

func TestCanonicalHost(t *testing.T) {
	for _, tt := range []struct{ in, want, addr, err string }{
		{in: "Example.COM.", want: "example.com"},
		{in: "bücher.de", want: "xn--bcher-kva.de"},
		{in: "3232235777", want: "192.168.1.1", addr: "192.168.1.1"},
		{in: "0xc0.0xa8.1.1", want: "192.168.1.1", addr: "192.168.1.1"},
		{in: "[::ffff:192.168.1.1]", want: "192.168.1.1", addr: "192.168.1.1"},
		{in: "::ffff:c0a8:101", want: "192.168.1.1", addr: "192.168.1.1"},
		{in: "[2001:DB8::1]", want: "2001:db8::1", addr: "2001:db8::1"},
		{in: "[fe80::1%eth0]", err: "invalid IPv6"},
		{in: "[1.2.3.4]", err: "invalid IPv6"},
		{in: "1.2.3.256", err: "invalid IPv4"},
		{in: "ex ample.com", err: "invalid character"},
	} {
		b, a, err := CanonicalHost(nil, tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("CanonicalHost(%q) = %q, %v, %v; want error %q", tt.in, b, a, err, tt.err)
			}
			continue
		}
		wantAddr := ""
		if a.IsValid() {
			wantAddr = a.String()
		}
		if err != nil || string(b) != tt.want || wantAddr != tt.addr {
			t.Errorf("CanonicalHost(%q) = %q, %v, %v; want %q, %q", tt.in, b, a, err, tt.want, tt.addr)
		}
	}
}

func TestCanonicalPath(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", "/"},
		{"/", "/"},
		{"/a/b", "/a/b"},
		{"/a/b/", "/a/b/"},
		{"/A/B.HTML", "/a/b.html"},
		{"/%62ad/%50age", "/bad/page"},
		{"/bad%2Fpage", "/bad/page"},
		{"/bad%2fpage", "/bad/page"},
		{"/bad\\page", "/bad/page"},
		{"/bad%5Cpage", "/bad/page"},
		{"/a/./b", "/a/b"},
		{"/a/../b", "/b"},
		{"/a/%2e%2E/b", "/b"},
		{"/a/.%2e/b", "/b"},
		{"/../../b", "/b"},
		{"/a/b/..", "/a/"},
		{"/a/b/.", "/a/b/"},
		{"/ok/..%2F..%2Fbad", "/bad"},
		{"//a///b//", "/a/b/"},
		{"/a b", "/a%20b"},
		{"/stra\xc3\x9fe", "/stra%C3%9Fe"},
		{"/stra%c3%9fe", "/stra%C3%9Fe"},
		{"/100%", "/100%25"},
		{"/100%zz", "/100%25zz"},
		{"/a%3Fb", "/a%3Fb"},
		{"/a%23b", "/a%23b"},
		{"/a%25b", "/a%25b"},
		{"/%7Euser", "/~user"},
		{"/a?", "/a"},
		{"/a?X=%41%2f&y=%7e", "/a?x=a%2F&y=~"},
		{"/a?q=a b", "/a?q=a+b"},
		{"/a#frag", "/a"},
		{"/a?x#frag", "/a?x"},
		{"/a/../b?c/../d", "/b?c/../d"},
		{"?q", "/?q"},
		{"a/b", "/a/b"},
		// Path parameters (";" to the next separator) are dropped from
		// every segment, as Java servers do; an encoded ";" is a literal.
		{"/dir;x/page.html", "/dir/page.html"},
		{"/dir;jsessionid=1/Page.html;y=2", "/dir/page.html"},
		{"/a;b", "/a"},
		{"/a;x/", "/a/"},
		{"/;x/a", "/a"},
		{"/a/..;x/b", "/b"},
		{"/a/.;x/b", "/a/b"},
		{"/a;x%2Fb", "/a/b"},
		{"/a;x\\b", "/a/b"},
		{"/a;x%5cb", "/a/b"},
		{"/a;x?q;y", "/a?q;y"},
		{"/a;x#f", "/a"},
		{"/a%3Bb/c", "/a%3Bb/c"},
		{"/a%3bb", "/a%3Bb"},
	} {
		got := string(AppendCanonicalPath(nil, tt.in))
		if got != tt.want {
			t.Errorf("AppendCanonicalPath(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if again := string(AppendCanonicalPath(nil, got)); again != got {
			t.Errorf("not idempotent: %q -> %q -> %q", tt.in, got, again)
		}
	}
}

func FuzzCanonicalPath(f *testing.F) {
	for _, s := range []string{"/a/../b", "/%2e%2e/x", "//a//b?c#d", "/a%2Fb", "/%zz", "/\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := AppendCanonicalPath(nil, s)
		if len(got) == 0 || got[0] != '/' {
			t.Fatalf("%q -> %q: no leading slash", s, got)
		}
		if len(got) > 3*len(s)+1 {
			t.Fatalf("%q -> %q: longer than the bound", s, got)
		}
		if again := AppendCanonicalPath(nil, string(got)); string(again) != string(got) {
			t.Fatalf("not idempotent: %q -> %q -> %q", s, got, again)
		}
		path := string(got)
		if i := strings.IndexByte(path, '?'); i >= 0 {
			path = path[:i]
		}
		for _, seg := range strings.Split(path, "/")[1:] {
			if seg == "." || seg == ".." {
				t.Fatalf("%q -> %q: dot segment left", s, got)
			}
		}
		if strings.Contains(path, "//") {
			t.Fatalf("%q -> %q: repeated slash", s, got)
		}
	})
}

// canonIndex builds an index with a plain URL entry (through the urls
// parser) and a hashed restricted entry.
func canonIndex(t testing.TB, plain, hashed string) *Index {
	t.Helper()
	b := NewBuilder(0)
	_, s, _ := b.AddList(ListInfo{Name: "urls", Category: Phishing})
	if res, err := Parse(strings.NewReader(plain+"\n"), "urls.txt", FormatURLs, s); err != nil || res.Entries != 1 {
		t.Fatalf("parse %q: %v %+v", plain, err, res)
	}
	_, h, _ := b.AddList(ListInfo{Name: "iwf", Category: IWF, Restricted: true, Format: FormatSHA256})
	h.Hash(sha256.Sum256([]byte(hashed)))
	ix, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

// lookupRaw matches a request as the policy engine does: canonical host
// and canonical path.
func lookupRaw(ix *Index, host, rawPath string) CategorySet {
	h, _, err := CanonicalHost(nil, host)
	if err != nil {
		return 0
	}
	var tr Trace
	return ix.LookupTrace(string(h), &tr) | ix.LookupURL(string(h), string(AppendCanonicalPath(nil, rawPath)))
}

// TestCanonicalURLMatch takes one plain entry and one hashed restricted
// entry and asks for each in the spellings a pupil could use.
func TestCanonicalURLMatch(t *testing.T) {
	for _, entry := range []string{"Bad.example/Dir/Page.html", "http://www.bad.example:8080/dir/./x/../page.html"} {
		ix := canonIndex(t, entry, "abuse.example/dir/page.html")
		for _, tt := range []struct {
			host, path string
			want       CategorySet
		}{
			{"bad.example", "/dir/page.html", SetOf(Phishing)},
			{"BAD.Example.", "/DIR/PAGE.HTML", SetOf(Phishing)},
			{"www.bad.example", "/dir/page.html?x=1", SetOf(Phishing)},
			{"bad.example", "/%64ir/%70age.html", SetOf(Phishing)},
			{"bad.example", "/dir%2Fpage.html", SetOf(Phishing)},
			{"bad.example", "/dir\\page.html", SetOf(Phishing)},
			{"bad.example", "/x/../dir/./page.html", SetOf(Phishing)},
			{"bad.example", "/x/%2e%2e/dir/%2E/page.html", SetOf(Phishing)},
			{"bad.example", "//dir///page.html", SetOf(Phishing)},
			{"bad.example", "/dir/other.html", 0},
			{"abuse.example", "/dir/page.html", SetOf(IWF)},
			{"ABUSE.EXAMPLE.", "/Dir/Page.HTML", SetOf(IWF)},
			{"www.abuse.example", "/dir/page.html", SetOf(IWF)},
			{"abuse.example", "/%64ir/%70age.html", SetOf(IWF)},
			{"abuse.example", "/dir%2Fpage.html", SetOf(IWF)},
			{"abuse.example", "/x/../dir/./page.html", SetOf(IWF)},
			{"abuse.example", "/a/%2e%2e/dir/%2e/page.html", SetOf(IWF)},
			{"abuse.example", "//dir//page.html", SetOf(IWF)},
			{"abuse.example", "/dir/page.html?utm=1", SetOf(IWF)},
			{"abuse.example", "/dir/page.html/more", SetOf(IWF)},
			{"abuse.example", "/dir/other.html", 0},
		} {
			if got := lookupRaw(ix, tt.host, tt.path); got != tt.want {
				t.Errorf("entry %q: %s%s = %v, want %v", entry, tt.host, tt.path, got, tt.want)
			}
		}
	}
}

// TestCanonicalURLPathParams: Java servers (Tomcat, Jetty) serve
// /dir;jsessionid=x/page.html as /dir/page.html and /x/..;/page.html as
// /page.html, so path parameters in any segment must not hide a plain or
// a hashed entry, and an entry's own are dropped at load. An encoded ";"
// is part of the segment's name for those servers, so it stays.
func TestCanonicalURLPathParams(t *testing.T) {
	for _, entry := range []string{"bad.example/dir/page.html", "bad.example/dir;v=1/page.html;x"} {
		ix := canonIndex(t, entry, "abuse.example/dir/page.html")
		for _, tt := range []struct {
			host, path string
			want       CategorySet
		}{
			{"bad.example", "/dir;x/page.html", SetOf(Phishing)},
			{"bad.example", "/DIR;jsessionid=AB12/page.html;y", SetOf(Phishing)},
			{"bad.example", "/other/..;x/dir;/page.html", SetOf(Phishing)},
			{"bad.example", "/dir;x/./page.html", SetOf(Phishing)},
			{"bad.example", "/dir%3Bx/page.html", 0},
			{"abuse.example", "/dir;x/page.html", SetOf(IWF)},
			{"abuse.example", "/dir;jsessionid=AB12/page.html;y", SetOf(IWF)},
			{"www.abuse.example", "/x/..;/dir;a=b/page.html?q=1", SetOf(IWF)},
			{"abuse.example", "/;x/dir/;y/page.html", SetOf(IWF)},
			{"abuse.example", "/dir%3Bx/page.html", 0},
		} {
			if got := lookupRaw(ix, tt.host, tt.path); got != tt.want {
				t.Errorf("entry %q: %s%s = %v, want %v", entry, tt.host, tt.path, got, tt.want)
			}
		}
	}
}

// TestCanonicalURLEntryQuery: an entry with a query matches only requests
// with that query; one without matches any query.
func TestCanonicalURLEntryQuery(t *testing.T) {
	ix := canonIndex(t, "q.example/watch?V=ABC", "h.example/watch?v=abc")
	for _, tt := range []struct {
		host, path string
		want       CategorySet
	}{
		{"q.example", "/watch?v=abc", SetOf(Phishing)},
		{"q.example", "/Watch?v=%61bc&t=1", SetOf(Phishing)},
		{"q.example", "/watch?v=xyz", 0},
		{"q.example", "/watch", 0},
		{"h.example", "/watch?V=ABC", SetOf(IWF)},
		{"h.example", "/watch?v=xyz", 0},
	} {
		if got := lookupRaw(ix, tt.host, tt.path); got != tt.want {
			t.Errorf("%s%s = %v, want %v", tt.host, tt.path, got, tt.want)
		}
	}
}

// TestCanonicalURLIPHost: URL entries on an IPv4 host match every
// spelling of the address.
func TestCanonicalURLIPHost(t *testing.T) {
	ix := canonIndex(t, "http://0xC0A80101/admin", "192.168.1.2/x")
	for _, host := range []string{"192.168.1.1", "3232235777", "0300.0250.01.01", "192.168.257", "[::ffff:192.168.1.1]"} {
		if got := lookupRaw(ix, host, "/Admin/"); got != SetOf(Phishing) {
			t.Errorf("%s/Admin/ = %v", host, got)
		}
	}
	if got := lookupRaw(ix, "0xc0.0xa8.1.2", "/x"); got != SetOf(IWF) {
		t.Errorf("hashed IP URL = %v", got)
	}
}

func BenchmarkLookupURL(b *testing.B) {
	bd := NewBuilder(0)
	_, s, _ := bd.AddList(ListInfo{Name: "urls", Category: Phishing})
	for i := range 1000 {
		s.URL([]byte("host"+string(rune('a'+i%26))+".example/path/page.html"), false)
	}
	s.URL([]byte("news.example/2026/12/bad"), false)
	ix, _ := bd.Build()
	b.ReportAllocs()
	for b.Loop() {
		if ix.LookupURL("images.cdn.news.example", "/2026/11/photo.jpg?w=640") != 0 {
			b.Fatal("matched")
		}
	}
}

func BenchmarkCanonicalPath(b *testing.B) {
	var buf [256]byte
	b.ReportAllocs()
	for b.Loop() {
		AppendCanonicalPath(buf[:0], "/2026/11/Photo%20One.jpg?w=640&h=%34%38%30")
	}
}

// TestURLQueryOrder: a site reads its query parameters in any order, so an
// entry with a query must not be dodged by reordering them or putting
// others between: a plain entry's parameters are looked for among the
// request's; a hashed entry is tried against each of the request's
// parameters alone too, so one with a single parameter is found wherever
// it is (one with several: TestURLQueryOrderHashed).
func TestURLQueryOrder(t *testing.T) {
	ix := canonIndex(t, "bad.example/view.php?img=123&size=big", "abuse.example/gallery.php?id=5")
	for _, tt := range []struct {
		host, path string
		want       CategorySet
	}{
		{"bad.example", "/view.php?img=123&size=big", SetOf(Phishing)},
		{"bad.example", "/view.php?size=big&img=123", SetOf(Phishing)},
		{"bad.example", "/view.php?x=1&img=123&y=2&size=big", SetOf(Phishing)},
		{"bad.example", "/view.php?size=bigger&img=123", SetOf(Phishing)}, // the last may be a prefix, as before
		{"bad.example", "/view.php?SIZE=big&%69mg=123", SetOf(Phishing)},
		{"bad.example", "/view.php?img=123", 0},
		{"bad.example", "/view.php?img=1234&size=big", 0},
		{"bad.example", "/other.php?size=big&img=123", 0},
		{"abuse.example", "/gallery.php?id=5", SetOf(IWF)},
		{"abuse.example", "/gallery.php?page=2&id=5", SetOf(IWF)},
		{"www.abuse.example", "/gallery.php?x=1&y=2&id=5&page=2", SetOf(IWF)},
		{"abuse.example", "/gallery.php?PAGE=2&%69d=5", SetOf(IWF)},
		{"abuse.example", "/gallery.php?a=1&b=2&c=3&d=4&e=5&f=6&g=7&h=8&id=5", SetOf(IWF)},
		{"abuse.example", "/gallery.php?x=1&id=55", 0},
		{"abuse.example", "/gallery.php?x=1&xid=5", 0},
		{"abuse.example", "/other.php?x=1&id=5", 0},
	} {
		if got := lookupRaw(ix, tt.host, tt.path); got != tt.want {
			t.Errorf("%s%s = %v, want %v", tt.host, tt.path, got, tt.want)
		}
	}
	// The entry an event records, reordered.
	if m, ok := ix.ExplainURL("bad.example", "/view.php?size=big&img=123", SetOf(Phishing)); !ok || m.Entry != "bad.example/view.php?img=123&size=big" {
		t.Errorf("ExplainURL reordered: %+v %v", m, ok)
	}
	if e := ix.hashedURLEntry("www.abuse.example", "/gallery.php?page=2&x=1&id=5", SetOf(IWF)); e != "abuse.example/gallery.php?id=5" {
		t.Errorf("hashedURLEntry reordered = %q", e)
	}
	// An allow entry takes its parameters in any order (TestURLQueryOrderHashed),
	// but exactly: not the last as a prefix.
	if _, bd := ix.LookupURLBounded("bad.example", "/view.php?size=big&img=123"); bd == 0 {
		t.Errorf("allow match reordered: %v", bd)
	}
	if _, bd := ix.LookupURLBounded("bad.example", "/view.php?size=bigger&img=123"); bd != 0 {
		t.Errorf("allow match with a longer value: %v", bd)
	}
}

// BenchmarkHashedURLQuery: a URL decision with the restricted tier's
// hashed list loaded, on a host with a www. (two hosts tried), for
// queries of four to 32 parameters and for none.
func BenchmarkHashedURLQuery(b *testing.B) {
	ix := canonIndex(b, "bad.example/view.php?img=123", "abuse.example/gallery.php?id=5")
	for _, p := range []string{"/search?q=volcano&hl=en&start=10&num=20", "/search?q=volcano&hl=en&start=10&num=20&safe=on&tbm=isch", "/watch?v=a&list=b&index=3&t=9&pp=x&si=y&feature=z", longQuery(10), longQuery(16), longQuery(32), "/2026/11/photo.jpg"} {
		b.Run(p, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if ix.LookupURL("www.news.example", p) != 0 {
					b.Fatal("matched")
				}
			}
		})
	}
}

// longQuery is a search path with n parameters.
func longQuery(n int) string {
	var b strings.Builder
	b.WriteString("/search?q=volcano")
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, "&p%02d=%d", i, i*7)
	}
	return b.String()
}

// TestURLQuerySpace: in a query, "+" and "%20" (and a raw space) all mean a
// space, as servers decode a query, and "%2B" is a literal plus; in a
// path "+" is a literal plus, the same as "%2B". One canonical form is made
// of each at load and for every request, so a plain or a hashed entry is
// not dodged by spelling its space the other way, and a plus is never
// taken for a space.
func TestURLQuerySpace(t *testing.T) {
	for _, entry := range []string{"bad.example/find?q=red+bus", "bad.example/find?q=red%20bus"} {
		ix := canonIndex(t, entry, "abuse.example/find?q=red+bus")
		for _, tt := range []struct {
			host, path string
			want       CategorySet
		}{
			{"bad.example", "/find?q=red+bus", SetOf(Phishing)},
			{"bad.example", "/find?q=red%20bus", SetOf(Phishing)},
			{"bad.example", "/find?q=red bus", SetOf(Phishing)},
			{"bad.example", "/find?x=1&q=red%20bus", SetOf(Phishing)},
			{"bad.example", "/find?q=red%2Bbus", 0},
			{"abuse.example", "/find?q=red+bus", SetOf(IWF)},
			{"abuse.example", "/find?q=red%20bus", SetOf(IWF)},
			{"www.abuse.example", "/find?q=red%20bus&page=2", SetOf(IWF)},
			{"abuse.example", "/find?q=red%2Bbus", 0},
			{"abuse.example", "/find?q=red%2bbus", 0},
		} {
			if got := lookupRaw(ix, tt.host, tt.path); got != tt.want {
				t.Errorf("entry %q: %s%s = %v, want %v", entry, tt.host, tt.path, got, tt.want)
			}
		}
	}
	// A plus in a path is a plus, however it is spelt, never a space.
	ix := canonIndex(t, "bad.example/c++/page", "abuse.example/a+b/page")
	for _, tt := range []struct {
		host, path string
		want       CategorySet
	}{
		{"bad.example", "/c++/page", SetOf(Phishing)},
		{"bad.example", "/c%2B%2b/page", SetOf(Phishing)},
		{"bad.example", "/c%20%20/page", 0},
		{"abuse.example", "/a+b/page", SetOf(IWF)},
		{"abuse.example", "/a%2Bb/page", SetOf(IWF)},
		{"abuse.example", "/a%20b/page", 0},
	} {
		if got := lookupRaw(ix, tt.host, tt.path); got != tt.want {
			t.Errorf("path plus: %s%s = %v, want %v", tt.host, tt.path, got, tt.want)
		}
	}
	for raw, want := range map[string]string{"/a+b?q=a+b%20c%2Bd e": "/a+b?q=a+b+c%2Bd+e", "/a%20b?%2B=+": "/a%20b?%2B=+"} {
		if got := string(AppendCanonicalPath(nil, raw)); got != want {
			t.Errorf("AppendCanonicalPath(%q) = %q, want %q", raw, got, want)
		}
	}
}

// TestURLQueryOrderHashed: a restricted list's hashed entry with several
// query parameters, hashed in the canonical form (its parameters sorted),
// is not dodged by sending them in another order or with others between,
// as a plain entry is not; an allow entry with several is matched in any
// order too (one canonical, sorted, form of the query at load and for
// every request). A hash of the parameters in another order still matches
// a request that sends them in that order.
func TestURLQueryOrderHashed(t *testing.T) {
	ix := canonIndex(t, "bad.example/view.php?size=big&img=123", "abuse.example/view.php?img=123&size=big")
	for _, tt := range []struct {
		host, path string
		want       CategorySet
	}{
		{"abuse.example", "/view.php?img=123&size=big", SetOf(IWF)},
		{"abuse.example", "/view.php?size=big&img=123", SetOf(IWF)},
		{"www.abuse.example", "/view.php?SIZE=big&%69mg=123", SetOf(IWF)},
		{"abuse.example", "/view.php?a=0&size=big&x=1&img=123&z=2", SetOf(IWF)},
		{"abuse.example", "/view.php?size=big&img=123&page=2", SetOf(IWF)},
		// More parameters than every set of is tried: the first few sorted.
		{"abuse.example", "/view.php?x1=1&size=big&x2=2&x3=3&img=123&x4=4&x5=5", SetOf(IWF)},
		{"abuse.example", "/view.php?size=big", 0},
		{"abuse.example", "/view.php?size=big&img=1234", 0},
		{"abuse.example", "/other.php?size=big&img=123", 0},
		{"bad.example", "/view.php?img=123&size=big", SetOf(Phishing)},
		{"bad.example", "/view.php?a=0&size=big&img=123", SetOf(Phishing)},
	} {
		if got := lookupRaw(ix, tt.host, tt.path); got != tt.want {
			t.Errorf("%s%s = %v, want %v", tt.host, tt.path, got, tt.want)
		}
	}
	// The entry a restricted match records is the hashed (sorted) form.
	if e := ix.hashedURLEntry("www.abuse.example", "/view.php?x=1&size=big&img=123", SetOf(IWF)); e != "abuse.example/view.php?img=123&size=big" {
		t.Errorf("hashedURLEntry reordered = %q", e)
	}
	// An allow entry: any order, others before or after, none of its
	// parameters named twice.
	for p, want := range map[string]bool{
		"/view.php?img=123&size=big": true, "/view.php?size=big&img=123": true, "/view.php?t=1&img=123&size=big": true,
		"/view.php?img=123&size=big&img=666": false, "/view.php?img=123": false, "/view.php?img=123&size=bigger": false,
	} {
		if _, bd := ix.LookupURLBounded("bad.example", string(AppendCanonicalPath(nil, p))); (bd != 0) != want {
			t.Errorf("allow %s = %v, want %v", p, bd, want)
		}
	}
	// A long query: every pair and every three of its parameters are
	// tried, so junk parameters sorting before an entry's do not hide it.
	three := canonIndex(t, "bad.example/x", "abuse.example/v.php?id=7&p=2&t=a")
	junk := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "a%02d=1&", i)
		}
		return b.String()
	}
	for _, tt := range []struct {
		ix   *Index
		path string
		want CategorySet
	}{
		{ix, "/view.php?" + junk(8) + "size=big&img=123", SetOf(IWF)},
		{ix, "/view.php?" + junk(14) + "size=big&zz=1&img=123", SetOf(IWF)},
		{ix, "/view.php?" + junk(29) + "size=big&img=123", SetOf(IWF)},
		{ix, "/view.php?" + junk(29) + "size=big&img=124", 0},
		{three, "/v.php?" + junk(5) + "t=a&id=7&x=9&p=2", SetOf(IWF)},
		{three, "/v.php?" + junk(8) + "t=a&id=7&p=2&zz=1", SetOf(IWF)},
		{three, "/v.php?" + junk(8) + "t=a&id=7&p=3&zz=1", 0},
		// Past 12 parameters every pair, not every three (the bound).
		{three, "/v.php?" + junk(10) + "t=a&id=7&p=2&zz=1", 0},
		// Past 32 parameters only the prefixes and each one alone.
		{ix, "/view.php?" + junk(31) + "size=big&img=123", 0},
		{ix, "/view.php?img=123&size=big&" + junk(31), SetOf(IWF)},
	} {
		if got := lookupRaw(tt.ix, "abuse.example", tt.path); got != tt.want {
			t.Errorf("abuse.example%s = %v, want %v", tt.path, got, tt.want)
		}
	}
	// A hash of the parameters unsorted (a publisher's own order) still
	// matches them sent in that order.
	ix = canonIndex(t, "bad.example/x", "abuse.example/view.php?size=big&img=123")
	if got := lookupRaw(ix, "abuse.example", "/view.php?size=big&img=123&page=2"); got != SetOf(IWF) {
		t.Errorf("unsorted hash in its order = %v", got)
	}
}
