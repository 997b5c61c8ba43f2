package httpproxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/policy"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// rawRequest sends one request line exactly as given (no client-side
// clean-up of the URL) from 127.0.0.1 and returns the status and body.
func (e *env) rawRequest(method, target, host string) (int, string) {
	e.t.Helper()
	c := e.dial("")
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: %s\r\nAccept: %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", method, target, host, browserAccept)
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestProxyCanonicalURL asks through the proxy for a URL-list entry and a
// hashed restricted entry in encoded, cased, dot-segment and doubled-slash
// spellings: each is blocked, none reaches the site.
func TestProxyCanonicalURL(t *testing.T) {
	e := newEnv(t, envOpts{})
	_, port, _ := net.SplitHostPort(e.origin.Listener.Addr().String())
	for _, tt := range []struct {
		url        string
		restricted bool
	}{
		{"http://SITE.test:" + port + "/CASINO", false},
		{"http://site.test:" + port + "/%63asino/", false},
		{"http://site.test:" + port + "/x/../casino", false},
		{"http://site.test:" + port + "/x/%2e%2e/casino", false},
		{"http://site.test:" + port + "//casino", false},
		{"http://site.test.:" + port + "/./Casino?x=1", false},
		{"http://abuse.test:" + port + "/dir/page.html", true},
		{"http://ABUSE.test:" + port + "/Dir/Page.HTML", true},
		{"http://abuse.test:" + port + "/%64ir/%70age.html", true},
		{"http://abuse.test:" + port + "/dir%2Fpage.html", true},
		{"http://abuse.test:" + port + "/x/../dir/./page.html", true},
		{"http://abuse.test:" + port + "//dir//page.html?utm=1", true},
	} {
		code, body := e.rawRequest("GET", tt.url, strings.SplitN(strings.TrimPrefix(tt.url, "http://"), "/", 2)[0])
		if code != http.StatusForbidden {
			t.Errorf("%s: status %d, want 403", tt.url, code)
			continue
		}
		if tt.restricted != strings.Contains(body, "This page is not available") {
			t.Errorf("%s: wrong block page:\n%s", tt.url, body)
		}
	}
	if n := e.hits.Load(); n != 0 {
		t.Errorf("the site was reached %d times", n)
	}
	ev := e.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Restricted })
	// The front door leaves the name for the store to redact (reports.Redact)
	// and never carries the URL; the entry is the matched entry's hash.
	if ev.URL != "" || ev.Entry != hashHex("abuse.test/dir/page.html") || ev.List != "restricted" || ev.Name != "abuse.test" {
		t.Errorf("restricted event: %+v", ev)
	}
	ev = e.sink.waitEvent(t, func(ev reports.Event) bool { return ev.List == "gamble-urls" })
	if ev.Entry != "site.test/casino" || ev.Category != "gambling" {
		t.Errorf("URL-list event: %+v", ev)
	}
	// Other pages of the same site pass (the origin itself redirects a path
	// with dot segments).
	if code, _ := e.rawRequest("GET", "http://site.test:"+port+"/casino-rules/../about", "site.test"); code == http.StatusForbidden {
		t.Errorf("allowed page: status %d", code)
	}
}

// TestProxyIPLists: plain HTTP and CONNECT to an address on an IP list are
// blocked in every spelling a browser accepts, decided as addresses (never
// looked up as names).
func TestProxyIPLists(t *testing.T) {
	e := newEnv(t, envOpts{})
	spellings := []string{"198.51.100.7", "3325256711", "0xC6336407", "0xc6.0x33.100.7", "0306.063.0144.07", "198.51.25607",
		"[::ffff:198.51.100.7]", "[::ffff:c633:6407]"}
	for _, h := range spellings {
		code, body := e.rawRequest("GET", "http://"+h+"/dns-query", h)
		if code != http.StatusForbidden || !strings.Contains(body, "198.51.100.7") {
			t.Errorf("GET http://%s/: status %d\n%s", h, code, body)
		}
		if n := e.res.count(strings.Trim(h, "[]")); n != 0 {
			t.Errorf("%s was looked up as a name", h)
		}
	}
	ev := e.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Source == "http" && ev.List == "doh-ips" })
	if ev.Name != "198.51.100.7" || ev.Entry != "198.51.100.7 in 198.51.100.0/24" || ev.Category != "doh" || !ev.Bypass || ev.Status != 403 {
		t.Errorf("http event: %+v", ev)
	}
	for _, target := range []string{"0xC6336407:443", "[2001:db8:d0::53]:443"} {
		if code, _, _ := e.connect("", target, ""); code != http.StatusForbidden {
			t.Errorf("CONNECT %s: status %d", target, code)
		}
	}
	ev = e.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Source == "connect" && ev.Name == "2001:db8:d0::53" })
	if ev.List != "doh-ips" || ev.Reason != "category" || ev.Entry != "2001:db8:d0::53 in 2001:db8:d0::/48" {
		t.Errorf("connect event: %+v", ev)
	}
	// A host ending in a number that is no address is refused, not
	// looked up.
	if code, _ := e.rawRequest("GET", "http://1.2.3.256/", "1.2.3.256"); code != http.StatusBadRequest {
		t.Errorf("1.2.3.256: status %d, want 400", code)
	}
	// An unlisted address in a short spelling is decided as that address.
	_, port, _ := net.SplitHostPort(e.origin.Listener.Addr().String())
	e.rawRequest("GET", "http://0x7f000001:"+port+"/", "0x7f000001:"+port)
	if e.res.count("0x7f000001") != 0 {
		t.Error("0x7f000001 was looked up as a name")
	}
	for _, ev := range e.sink.events() {
		if ev.Name == "127.0.0.1" && ev.List == "doh-ips" {
			t.Errorf("unlisted address blocked: %+v", ev)
		}
	}
}

// TestProxyLookupBlocked: when the resolver refuses a name because its
// answer has a blocked CNAME target or address, the proxy answers with
// its block page (plain HTTP, pooled or not) or 403 (CONNECT) and an event,
// not a 502.
func TestProxyLookupBlocked(t *testing.T) {
	e := newEnv(t, envOpts{})
	client := netip.MustParseAddr("127.0.0.1")
	eng := e.s.o.Engine()
	cname := eng.Decide(policy.Request{Client: client, Host: "edge.adult.test"})
	addr := netip.MustParseAddr("198.51.100.9")
	byAddr, _, _ := eng.DecideAddrs(policy.Request{Client: client}, []netip.Addr{addr})
	if cname.Action != policy.Block || byAddr.Action != policy.Block {
		t.Fatalf("test decisions: %+v %+v", cname, byAddr)
	}
	e.res.mu.Lock()
	e.res.errs["cdn.test"] = &policy.BlockedError{Name: "cdn.test", Target: "edge.adult.test", Decision: cname}
	e.res.errs["doh.test"] = &policy.BlockedError{Name: "doh.test", Addr: addr, Decision: byAddr}
	e.res.mu.Unlock()

	for _, tt := range []struct{ method, host, category string }{
		{"GET", "cdn.test", "pornography"},  // pooled upstream path
		{"POST", "cdn.test", "pornography"}, // through goproxy's transport
		{"GET", "doh.test", "doh"},
		{"POST", "doh.test", "doh"},
	} {
		code, body := e.rawRequest(tt.method, "http://"+tt.host+"/page", tt.host)
		if code != http.StatusForbidden || !strings.Contains(body, "This site is blocked") || !strings.Contains(body, tt.host) {
			t.Errorf("%s %s: status %d\n%s", tt.method, tt.host, code, body)
		}
		ev := e.sink.waitEvent(t, func(ev reports.Event) bool {
			return ev.Source == "http" && ev.Name == tt.host && ev.Method == tt.method
		})
		if ev.Action != "block" || ev.Category != tt.category || ev.Status != 403 || ev.URL != "http://"+tt.host+"/page" {
			t.Errorf("%s %s: event %+v", tt.method, tt.host, ev)
		}
	}
	ev := e.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Name == "cdn.test" })
	if ev.Entry != "adult.test" || ev.List != "adult" {
		t.Errorf("CNAME event: %+v", ev)
	}
	ev = e.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Name == "doh.test" })
	if ev.Entry != "198.51.100.9 in 198.51.100.0/24" || ev.List != "doh-ips" || !ev.Bypass {
		t.Errorf("address event: %+v", ev)
	}
	code, c, br := e.connect("", "cdn.test:443", "")
	if code != http.StatusForbidden {
		t.Fatalf("CONNECT: status %d", code)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if line, _ := br.ReadString('\n'); !strings.Contains(line, "cdn.test is blocked") {
		t.Errorf("CONNECT body: %q", line)
	}
	ev = e.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Source == "connect" && ev.Name == "cdn.test" })
	if ev.Action != "block" || ev.Category != "pornography" || ev.Status != 403 {
		t.Errorf("CONNECT event: %+v", ev)
	}
	if n := e.hits.Load(); n != 0 {
		t.Errorf("the site was reached %d times", n)
	}
}

// TestFragmentInTargetRefused: a raw '#' in a request-target (which no
// browser sends) is refused with 400, in the clear and decrypted: the URL
// lists' canonical form would take it as the fragment's start and miss
// the parameters after it, which the site reads ("?x#&img=1" is img=1 to
// a Go server), so an entry for view.php?img=1 would be dodged.
func TestFragmentInTargetRefused(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.editGroup("students", func(g *config.Group) { g.Deny = []string{"site.test/view.php?img=1"} })
	_, port, _ := net.SplitHostPort(e.origin.Listener.Addr().String())
	host := "site.test:" + port
	if code, _ := e.rawRequest("GET", "http://"+host+"/view.php?x=1&img=1", host); code != http.StatusForbidden {
		t.Fatalf("the entry's own page: %d", code)
	}
	for _, target := range []string{"/view.php?x#&img=1", "/view.php#x?img=1"} {
		if code, body := e.rawRequest("GET", "http://"+host+target, host); code != http.StatusBadRequest {
			t.Errorf("%s: %d %q", target, code, body)
		}
	}
	if n := e.hits.Load(); n != 0 {
		t.Errorf("the site served %d requests", n)
	}

	ie := newInspectEnv(t, "")
	ie.setDecrypt(config.DecryptAll)
	tc := ie.tlsThrough(t, "site.test:"+ie.port, ie.school, "http/1.1")
	fmt.Fprintf(tc, "GET /view.php?x#&img=1 HTTP/1.1\r\nHost: site.test:%s\r\n\r\n", ie.port)
	r, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil || r.StatusCode != http.StatusBadRequest {
		t.Errorf("decrypted: %v %v", r, err)
	}
	if n := ie.hits.Load(); n != 0 {
		t.Errorf("the site served %d decrypted requests", n)
	}
}

// TestAllowEntryParamRepeated: a group allows one page of a blocked site
// by its query (games.test/play.php?id=5); naming the parameter again
// (id=5&id=666, which most sites read as 666) is not that page.
func TestAllowEntryParamRepeated(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.editGroup("students", func(g *config.Group) { g.Allow = []string{"games.test/play.php?id=5"} })
	c := e.client("", "", "")
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/play.php?id=5", http.StatusOK},
		{"/play.php?id=5&t=10", http.StatusOK},
		{"/play.php?id=6", http.StatusForbidden},
		{"/play.php?id=5&id=666", http.StatusForbidden},
		{"/play.php?id=5&x=1&ID=666", http.StatusForbidden},
	} {
		if resp, _ := get(t, c, e.originURL("games.test", tc.path)); resp.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d", tc.path, resp.StatusCode, tc.want)
		}
	}
}

// TestVideoEntryEveryAddress: a group's deny entry for a YouTube video
// blocks it at its embed, short and youtu.be addresses too.
func TestVideoEntryEveryAddress(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.editGroup("students", func(g *config.Group) { g.Deny = []string{"https://www.youtube.com/watch?v=dQw4w9WgXcQ"} })
	e.res.mu.Lock()
	for _, h := range []string{"www.youtube.com", "youtu.be", "www.youtube-nocookie.com", bl.YouTubeStrict, bl.YouTubeModerate} {
		e.res.names[h] = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	}
	e.res.mu.Unlock()
	c := e.client("", "", "")
	for _, u := range []string{"www.youtube.com/embed/dQw4w9WgXcQ?autoplay=1", "www.youtube.com/shorts/dQw4w9WgXcQ",
		"youtu.be/dQw4w9WgXcQ", "www.youtube-nocookie.com/embed/dQw4w9WgXcQ"} {
		host, path, _ := strings.Cut(u, "/")
		if resp, _ := get(t, c, e.originURL(host, "/"+path)); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %d, want the block page", u, resp.StatusCode)
		}
	}
	if resp, _ := get(t, c, e.originURL("www.youtube.com", "/embed/0000000000a")); resp.StatusCode != 200 {
		t.Errorf("another video: %d", resp.StatusCode)
	}
}
