package blocklists

import (
	"strings"
	"testing"
)

func TestNormalizeDomain(t *testing.T) {
	label63 := strings.Repeat("a", 63)
	name253 := strings.Repeat(strings.Repeat("b", 62)+".", 4)[:248] + ".abcd" // 253 chars
	tests := []struct {
		in, want, err string
	}{
		{in: "example.com", want: "example.com"},
		{in: "  Example.COM.  ", want: "example.com"},
		{in: "\texample.com\r\n", want: "example.com"},
		{in: "_dns.resolver.arpa", want: "_dns.resolver.arpa"},
		{in: "a_b.example", want: "a_b.example"},
		{in: "xn--bcher-kva.de", want: "xn--bcher-kva.de"},
		{in: "bücher.de", want: "xn--bcher-kva.de"},
		{in: "BÜCHER.DE.", want: "xn--bcher-kva.de"},
		{in: "münchen.de", want: "xn--mnchen-3ya.de"},
		{in: "例え.テスト", want: "xn--r8jz45g.xn--zckzah"},
		{in: "straße.de", want: "xn--strae-oqa.de"}, // non-transitional, as browsers
		{in: "1.2.3.4", want: "1.2.3.4"},
		{in: "localhost", want: "localhost"},
		{in: label63 + ".com", want: label63 + ".com"},
		{in: name253, want: name253},
		{in: name253 + ".", want: name253},

		{in: "", err: "empty name"},
		{in: "   ", err: "empty name"},
		{in: ".", err: "empty name"},
		{in: "a" + label63 + ".com", err: "label longer than 63 characters"},
		{in: name253 + "e", err: "name longer than 253 characters"},
		{in: "a..b", err: "empty label"},
		{in: ".a.b", err: "empty label"},
		{in: "a.b..", err: "empty label"},
		{in: "-a.com", err: "label starts or ends with a hyphen"},
		{in: "a-.com", err: "label starts or ends with a hyphen"},
		{in: "a.-b-.com", err: "label starts or ends with a hyphen"},
		{in: "a*b.com", err: "invalid character '*'"},
		{in: "a/b", err: "invalid character '/'"},
		{in: "a b.com", err: "invalid character ' ' (space)"},
		{in: "a\x01b.com", err: "invalid character 0x01"},
		{in: "b\xffd.com", err: "invalid UTF-8"},
		{in: "a\ufffdb.com", err: "invalid international name: idna: disallowed rune U+FFFD"},
		{in: "\u05d0a.com", err: "invalid international name"}, // mixed-direction label
	}
	for _, tt := range tests {
		got, err := NormalizeDomain(nil, []byte(tt.in))
		if tt.err != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tt.err) {
				t.Errorf("NormalizeDomain(%q) = %q, %v; want error %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || string(got) != tt.want {
			t.Errorf("NormalizeDomain(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestNormalizeDomainReusesDst(t *testing.T) {
	buf := make([]byte, 0, 64)
	buf = append(buf, "junk"...)
	got, err := NormalizeDomain(buf, []byte("A.Example"))
	if err != nil || string(got) != "a.example" || &got[0] != &buf[:1][0] {
		t.Fatalf("got %q, %v; want a.example written over dst", got, err)
	}
	if allocs := testing.AllocsPerRun(100, func() {
		buf, _ = NormalizeDomain(buf, []byte("Some.Host.Example.COM."))
		buf, _ = NormalizeDomain(buf, []byte("bad name"))
	}); allocs != 0 {
		t.Errorf("ASCII NormalizeDomain allocates %.1f times per call", allocs)
	}
}

func TestNormalizeHost(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{in: "example.com", want: "example.com"},
		{in: "WWW.Example.com", want: "www.example.com"},
		{in: "example.com:8080", want: "example.com"},
		{in: "https://user:pw@Example.COM.:8443/path?q#f", want: "example.com"},
		{in: "http://bücher.de/", want: "xn--bcher-kva.de"},
		{in: "[2001:DB8::1]:443", want: "2001:db8::1"},
		{in: "2001:db8::1", want: "2001:db8::1"},
		{in: "http://[::1]/", want: "::1"},
		{in: "192.0.2.1:53", want: "192.0.2.1"},
		{in: "example.com?x", want: "example.com"},
		{in: "", err: "missing host"},
		{in: "http:///path", err: "missing host"},
		{in: "example.com:http", err: "invalid port"},
		{in: "[::1", err: "unclosed '['"},
		{in: "[example.com]", err: "invalid IPv6 address"},
		{in: "exa mple.com", err: "invalid character"},
	}
	for _, tt := range tests {
		got, err := NormalizeHost(tt.in)
		if tt.err != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tt.err) {
				t.Errorf("NormalizeHost(%q) = %q, %v; want error %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("NormalizeHost(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestNormalizeURL(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{in: "http://WWW.Example.com:80/a/b?x", want: "example.com/a/b?x"},
		{in: "https://user:pw@www.example.com:443/A/B?Q=1#frag", want: "example.com/a/b?q=1"},
		{in: "example.com/a", want: "example.com/a"},
		{in: "www.example.com/a", want: "example.com/a"},
		{in: "www2.example.com/a", want: "example.com/a"},
		{in: "www.com/a", want: "www.com/a"},                   // nothing registrable would remain
		{in: "wwwx.example.com/a", want: "wwwx.example.com/a"}, // not a www label
		{in: "sub.www.example.com/a", want: "sub.www.example.com/a"},
		{in: "http://example.com", want: "example.com/"},
		{in: "http://example.com?q", want: "example.com/?q"},
		{in: "http://example.com#top", want: "example.com/"},
		{in: "example.com:8080/x", want: "example.com/x"},
		{in: "http://bücher.de/straße", want: "xn--bcher-kva.de/stra%C3%9Fe"},
		{in: "http://example.com/a b", want: "example.com/a%20b"},
		{in: "http://example.com//x//y", want: "example.com/x/y"},
		{in: "http://example.com/a/../B%2Fc/./d", want: "example.com/b/c/d"},
		{in: "http://3232235777/x", want: "192.168.1.1/x"},
		{in: "http://[::ffff:192.168.1.1]/x", want: "192.168.1.1/x"},
		{in: "http://evil.example\\@good.example/", want: "evil.example/@good.example/"},
		{in: "http://[2001:db8::1]:8080/x", want: "2001:db8::1/x"},
		{in: "HTTP://Example.com/", want: "example.com/"},
		{in: "ftp://files.example.com/pub", want: "files.example.com/pub"},
		{in: "/just/a/path", err: "missing host"},
		{in: "http://exa_mple!.com/", err: "invalid character '!'"},
	}
	for _, tt := range tests {
		got, err := NormalizeURL(tt.in)
		if tt.err != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tt.err) {
				t.Errorf("NormalizeURL(%q) = %q, %v; want error %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("NormalizeURL(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// A list entry and a request for the same page normalise alike, whether or
// not either has "www.".
func TestNormalizeURLBothWays(t *testing.T) {
	for _, entry := range []string{"example.com/page", "www.example.com/page"} {
		e, err := appendURL(nil, []byte(entry), true)
		if err != nil {
			t.Fatal(err)
		}
		for _, req := range []string{"http://example.com/page", "https://www.example.com/page", "http://WWW.EXAMPLE.COM:80/page#x"} {
			r, err := NormalizeURL(req)
			if err != nil || r != string(e) {
				t.Errorf("entry %q -> %q, request %q -> %q, %v", entry, e, req, r, err)
			}
		}
	}
}

func FuzzNormalizeDomain(f *testing.F) {
	for _, s := range []string{"example.com", "Bücher.DE.", "_dns.resolver.arpa", "a..b", "-a.com", "xn--bcher-kva.de", "\xff", "例え.テスト", "a。b", strings.Repeat("a.", 130)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := NormalizeDomain(nil, []byte(s))
		NormalizeHost(s)
		NormalizeURL(s)
		if err != nil {
			return
		}
		if len(got) == 0 || len(got) > maxNameLen {
			t.Fatalf("NormalizeDomain(%q) = %q: bad length", s, got)
		}
		for _, l := range strings.Split(string(got), ".") {
			if checkLabel([]byte(l)) != nil {
				t.Fatalf("NormalizeDomain(%q) = %q: bad label %q", s, got, l)
			}
		}
		for _, c := range got {
			if nameByte[c] != c {
				t.Fatalf("NormalizeDomain(%q) = %q: bad byte %q", s, got, c)
			}
		}
		again, err := NormalizeDomain(nil, got)
		if err != nil || string(again) != string(got) {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", s, got, again, err)
		}
	})
}
