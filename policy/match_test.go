package policy

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// TestDecideCanonicalURL asks for listed URLs (a plain URL entry, a
// hashed restricted entry, a group's inline deny URL) in the spellings a
// pupil could use to get past a literal comparison.
func TestDecideCanonicalURL(t *testing.T) {
	e, _ := setup(t, testConfig, testFiles)
	student := netip.MustParseAddr("10.1.5.5")
	guest := netip.MustParseAddr("192.168.1.1")
	for _, tt := range []struct {
		client     netip.Addr
		host, path string
		reason     Reason
	}{
		{student, "bank.example", "/LOGIN", ReasonCategory},
		{student, "bank.example", "/%6Cogin?next=1", ReasonCategory},
		{student, "bank.example", "/x/../login", ReasonCategory},
		{student, "bank.example", "/x/%2e%2E/login", ReasonCategory},
		{student, "bank.example", "//login", ReasonCategory},
		{student, "bank.example", "/./login", ReasonCategory},
		{guest, "host.example", "/BAD/Page.HTML", ReasonRestricted},
		{guest, "host.example", "/%62ad/page.html", ReasonRestricted},
		{guest, "host.example", "/bad%2Fpage.html", ReasonRestricted},
		{guest, "host.example", "/x/../bad/./page.html", ReasonRestricted},
		{guest, "host.example", "//bad//page.html", ReasonRestricted},
		{guest, "www.host.example", "/bad/page.html", ReasonRestricted},
		{student, "video.example", "/Bad/clip", ReasonGroupDeny},
		{student, "video.example", "/good/../bad", ReasonGroupDeny},
		{student, "video.example", "/%62ad", ReasonGroupDeny},
	} {
		d := e.Decide(Request{Client: tt.client, Host: tt.host, Path: tt.path, Time: eveningTime})
		if d.Action != Block || d.Reason != tt.reason {
			t.Errorf("%s%s: %s/%s, want block/%s", tt.host, tt.path, d.Action, d.Reason, tt.reason)
		}
		if tt.reason == ReasonRestricted && (d.Entry != "" || d.List != "restricted") {
			t.Errorf("%s%s: restricted decision shows list %q entry %q", tt.host, tt.path, d.List, d.Entry)
		}
	}
	for _, path := range []string{"/about", "/login-help/../about", "/bad"} {
		if d := e.Decide(Request{Client: student, Host: "bank.example", Path: path, Time: eveningTime}); d.Action != Allow {
			t.Errorf("bank.example%s: %s/%s, want allow", path, d.Action, d.Reason)
		}
	}
}

const ipConfig = `
  - name: doh-ips
    path: {{dir}}/doh-ips.txt
    category: doh
    format: ips
`

func ipSetup(t *testing.T) *Engine {
	t.Helper()
	cfg := strings.Replace(testConfig, "lists:\n", "lists:"+ipConfig, 1)
	cfg = strings.Replace(cfg, "deny: [annoying.example, video.example/bad]", "deny: [annoying.example, video.example/bad, 203.0.113.0/24]", 1)
	cfg = strings.Replace(cfg, "allow: [abuse.example, teach.games.example]", "allow: [abuse.example, teach.games.example, 198.51.100.10]", 1)
	files := map[string]string{"doh-ips.txt": "198.51.100.0/24\n198.18.1.1\n2001:db8:4700::1111\n"}
	for k, v := range testFiles {
		files[k] = v
	}
	e, _ := setup(t, cfg, files)
	return e
}

// TestDecideIP: IP lists and a group's inline address entries decide, in
// the same order as names.
func TestDecideIP(t *testing.T) {
	e := ipSetup(t)
	student := netip.MustParseAddr("10.1.5.5")
	staff := netip.MustParseAddr("10.2.0.7")
	for _, tt := range []struct {
		client netip.Addr
		addr   string
		action Action
		reason Reason
		list   string
		entry  string
	}{
		{student, "198.51.100.9", Block, ReasonCategory, "doh-ips", "198.51.100.9 in 198.51.100.0/24"},
		{student, "198.18.1.1", Block, ReasonCategory, "doh-ips", "198.18.1.1"},
		{student, "::ffff:198.18.1.1", Block, ReasonCategory, "doh-ips", "198.18.1.1"},
		{student, "2001:db8:4700::1111", Block, ReasonCategory, "doh-ips", "2001:db8:4700::1111"},
		{student, "198.51.100.10", Allow, ReasonGroupAllow, "group/students/allow", "198.51.100.10"},
		{student, "203.0.113.7", Block, ReasonGroupDeny, "group/students/deny", "203.0.113.7 in 203.0.113.0/24"},
		{student, "198.18.1.2", Allow, ReasonDefault, "", ""},
		// The built-in list of public resolvers' addresses (DoH by address).
		{student, "8.8.8.8", Block, ReasonCategory, "embedded/doh-ips", "8.8.8.8"},
		{student, "2001:4860:4860::8888", Block, ReasonCategory, "embedded/doh-ips", "2001:4860:4860::8888"},
		{staff, "8.8.8.8", Allow, ReasonDefault, "", ""},
		{staff, "198.18.1.1", Allow, ReasonDefault, "", ""}, // staff do not block doh
	} {
		a := netip.MustParseAddr(tt.addr)
		d := e.Decide(Request{Client: tt.client, Host: a.Unmap().String(), Addr: a.Unmap(), Time: lessonTime})
		if d.Action != tt.action || d.Reason != tt.reason || d.List != tt.list || d.Entry != tt.entry {
			t.Errorf("%s for %s: %s/%s list=%q entry=%q; want %s/%s list=%q entry=%q", tt.addr, tt.client,
				d.Action, d.Reason, d.List, d.Entry, tt.action, tt.reason, tt.list, tt.entry)
		}
		got, i, _ := e.DecideAddrs(Request{Client: tt.client, Time: lessonTime}, []netip.Addr{netip.MustParseAddr("192.0.2.1"), a})
		if want := tt.action == Block; (i == 1) != want || (want && got.Entry != tt.entry) || (!want && i != -1) {
			t.Errorf("DecideAddrs(%s) for %s = %d %+v", tt.addr, tt.client, i, got)
		}
	}
	if !e.HasIPRules() {
		t.Error("HasIPRules = false with an ips list loaded")
	}
	if d := e.Decide(Request{Client: student, Host: "resolver.example", Time: lessonTime}); !d.CheckAddrs() {
		t.Error("CheckAddrs = false for a name with IP lists loaded")
	}
	if d := e.Decide(Request{Client: student, Host: "games.example", Time: lessonTime}); d.Reason != ReasonGroupAllow || d.CheckAddrs() {
		t.Errorf("CheckAddrs = true for a name the group allows (%s)", d.Reason)
	}
	// Without configured IP lists the built-in one still decides; an
	// address on no list is unlisted whoever asks.
	plain, _ := setup(t, testConfig, testFiles)
	if !plain.HasIPRules() || !plain.Decide(Request{Client: student, Host: "resolver.example"}).CheckAddrs() {
		t.Error("HasIPRules or CheckAddrs false with the built-in address list")
	}
	// unlisted is DecideAddrs's listed, negated: client-independent, so
	// asked for staff, who block no address.
	unlisted := func(eng *Engine, addrs ...string) bool {
		var as []netip.Addr
		for _, a := range addrs {
			as = append(as, netip.MustParseAddr(a))
		}
		_, i, listed := eng.DecideAddrs(Request{Client: staff, Time: lessonTime}, as)
		return i < 0 && !listed
	}
	if !unlisted(plain, "192.0.2.1", "::ffff:198.18.1.1") {
		t.Error("listed = true for addresses on no list")
	}
	if unlisted(plain, "192.0.2.1", "::ffff:8.8.8.8") || unlisted(plain, "64:ff9b::808:808") {
		t.Error("listed = false for a listed address")
	}
	// A group's address entry may block any address, so none is unlisted.
	if unlisted(e, "192.0.2.1") {
		t.Error("listed = false with a group denying addresses")
	}
}

func TestBlockedError(t *testing.T) {
	var err error = &BlockedError{Name: "a.example", Addr: netip.MustParseAddr("9.9.9.9")}
	if !errors.Is(err, ErrBlocked) || !strings.Contains(err.Error(), "9.9.9.9") {
		t.Errorf("BlockedError: %v", err)
	}
	var be *BlockedError
	if !errors.As(errors.Join(errors.New("x"), err), &be) || be.Name != "a.example" {
		t.Error("BlockedError not found through a wrap")
	}
}

// TestDecideURLAndIPAllocations: allowed URLs and addresses cost no
// allocation (a block's explanation may build its entry string).
func TestDecideURLAndIPAllocations(t *testing.T) {
	e := ipSetup(t)
	student := netip.MustParseAddr("10.1.5.5")
	for _, r := range []Request{
		{Client: student, Host: "bank.example", Path: "/x/../%6Cogout?next=1", Time: eveningTime},
		{Client: student, Host: "www.bbc.co.uk", Path: "/news/uk-12345678?at_medium=RSS", Time: eveningTime},
		{Client: student, Host: "192.0.2.1", Addr: netip.MustParseAddr("192.0.2.1"), Time: eveningTime},
	} {
		if d := e.Decide(r); d.Action != Allow {
			t.Fatalf("%s%s: %s", r.Host, r.Path, d.Action)
		}
		if n := testing.AllocsPerRun(200, func() { e.Decide(r) }); n != 0 {
			t.Errorf("Decide(%s%s) allocates %.1f times", r.Host, r.Path, n)
		}
	}
	addrs := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")}
	if n := testing.AllocsPerRun(200, func() { e.DecideAddrs(Request{Client: student}, addrs) }); n != 0 {
		t.Errorf("DecideAddrs (allowed) allocates %.1f times", n)
	}
}

// TestDecideAllowURLBoundary: a group's allow URL entries (inline and in an
// allow list) allow the page and what lies under it, not every URL the
// entry's text is a prefix of; block and deny URL entries still match by
// prefix.
func TestDecideAllowURLBoundary(t *testing.T) {
	cfg := strings.Replace(testConfig, "allow: [abuse.example, teach.games.example]",
		`allow: [abuse.example, teach.games.example, "tube.example/edu", "tube.example/watch?v=abc", "tube.example/docs/"]`, 1)
	files := map[string]string{}
	for k, v := range testFiles {
		files[k] = v
	}
	files["adult.txt"] += "tube.example\n"
	files["allow.txt"] += "tube.example/kids\n"
	e, _ := setup(t, cfg, files)
	student := netip.MustParseAddr("10.1.5.5")
	for _, tt := range []struct {
		host, path  string
		action      Action
		reason      Reason
		list, entry string
	}{
		{"tube.example", "/edu", Allow, ReasonGroupAllow, "group/students/allow", "tube.example/edu"},
		{"tube.example", "/EDU/maths?x=1", Allow, ReasonGroupAllow, "group/students/allow", "tube.example/edu"},
		{"www.tube.example", "/edu?x=1", Allow, ReasonGroupAllow, "group/students/allow", "tube.example/edu"},
		{"tube.example", "/edu;jsessionid=1/x", Allow, ReasonGroupAllow, "group/students/allow", "tube.example/edu"},
		{"tube.example", "/watch?v=abc", Allow, ReasonGroupAllow, "group/students/allow", "tube.example/watch?v=abc"},
		{"tube.example", "/watch?v=ABC&t=10", Allow, ReasonGroupAllow, "group/students/allow", "tube.example/watch?v=abc"},
		{"tube.example", "/docs/a", Allow, ReasonGroupAllow, "group/students/allow", "tube.example/docs/"},
		{"tube.example", "/kids", Allow, ReasonGroupAllow, "school-allow", "tube.example/kids"},
		{"tube.example", "/kids/songs", Allow, ReasonGroupAllow, "school-allow", "tube.example/kids"},
		{"tube.example", "/education-adult-stuff", Block, ReasonCategory, "adult", "tube.example"},
		{"tube.example", "/edux", Block, ReasonCategory, "adult", "tube.example"},
		{"tube.example", "/edu/..;x/adult", Block, ReasonCategory, "adult", "tube.example"},
		{"tube.example", "/watch?v=abcdef", Block, ReasonCategory, "adult", "tube.example"},
		{"tube.example", "/docs", Block, ReasonCategory, "adult", "tube.example"},
		{"tube.example", "/kidsxxx", Block, ReasonCategory, "adult", "tube.example"},
		// Block and deny URL entries keep matching by prefix.
		{"bank.example", "/loginx", Block, ReasonCategory, "phishing-urls", "bank.example/login"},
		{"bank.example", "/login-help", Block, ReasonCategory, "phishing-urls", "bank.example/login"},
		{"video.example", "/badge", Block, ReasonGroupDeny, "group/students/deny", "video.example/bad"},
	} {
		d := e.Decide(Request{Client: student, Host: tt.host, Path: tt.path, Time: eveningTime})
		if d.Action != tt.action || d.Reason != tt.reason || d.List != tt.list || d.Entry != tt.entry {
			t.Errorf("%s%s: %s/%s list %q entry %q, want %s/%s list %q entry %q", tt.host, tt.path,
				d.Action, d.Reason, d.List, d.Entry, tt.action, tt.reason, tt.list, tt.entry)
		}
	}
}

// TestDecideNameByWholeSiteURL: a block or deny URL entry that covers a
// whole site (a URL list's bare host, host/ in a URL list, a restricted
// list loaded as URLs or hashed, a deny entry pasted from the address
// bar) blocks the name alone (a DNS query, a CONNECT) on the hosts it
// covers for the proxy, naming its list and entry as the proxy's block
// does (a restricted one only by hash). An entry with a path or a query
// does not, a hashed host/ covers no subdomain (the URL matcher tries
// none), and an allow entry host/ does not allow the name.
func TestDecideNameByWholeSiteURL(t *testing.T) {
	cfg := strings.Replace(testConfig, "lists:\n", `lists:
  - name: ctiru-urls
    path: {{dir}}/ctiru-urls.txt
    category: ctiru
    format: urls
`, 1)
	cfg = strings.Replace(cfg, "deny: [annoying.example, video.example/bad]", `deny: [annoying.example, video.example/bad, "https://www.denied.example/"]`, 1)
	cfg = strings.Replace(cfg, "allow: [abuse.example, teach.games.example]", `allow: [abuse.example, teach.games.example, "kids.example/"]`, 1)
	files := map[string]string{}
	for k, v := range testFiles {
		files[k] = v
	}
	files["phish-urls.txt"] += "wholesite.example\npathsite.example/\nother.example/videos\nquery.example/?id=1\n"
	files["iwf.txt"] += hashOf("hashsite.example/") + "\n"
	files["ctiru-urls.txt"] = "ctiru.example/\n"
	files["deny.txt"] += "denysite.example/\n"
	files["allow.txt"] += "allowsite.example/\n"
	files["adult.txt"] += "kids.example\nallowsite.example\n"
	e, _ := setup(t, cfg, files)
	student := netip.MustParseAddr("10.1.5.5")
	staff := netip.MustParseAddr("10.2.0.7")
	for _, tt := range []struct {
		client      netip.Addr
		host, path  string
		action      Action
		reason      Reason
		list, entry string
		hash        string // the restricted entry's
	}{
		{student, "wholesite.example", "", Block, ReasonCategory, "phishing-urls", "wholesite.example", ""},
		{student, "www.wholesite.example", "", Block, ReasonCategory, "phishing-urls", "wholesite.example", ""},
		{student, "a.b.wholesite.example", "", Block, ReasonCategory, "phishing-urls", "wholesite.example", ""},
		{student, "pathsite.example", "", Block, ReasonCategory, "phishing-urls", "pathsite.example/", ""},
		{student, "www.pathsite.example", "", Block, ReasonCategory, "phishing-urls", "pathsite.example/", ""},
		{staff, "wholesite.example", "", Allow, ReasonDefault, "", "", ""}, // staff do not block phishing
		{student, "other.example", "", Allow, ReasonDefault, "", "", ""},
		{student, "query.example", "", Allow, ReasonDefault, "", "", ""},
		{staff, "hashsite.example", "", Block, ReasonRestricted, "restricted", "", hashOf("hashsite.example/")},
		{student, "www.hashsite.example", "", Block, ReasonRestricted, "restricted", "", hashOf("hashsite.example/")},
		{student, "sub.hashsite.example", "", Allow, ReasonDefault, "", "", ""},
		{staff, "ctiru.example", "", Block, ReasonRestricted, "restricted", "", hashOf("ctiru.example/")},
		{student, "x.ctiru.example", "", Block, ReasonRestricted, "restricted", "", hashOf("ctiru.example/")},
		{student, "denied.example", "", Block, ReasonGroupDeny, "group/students/deny", "denied.example/", ""},
		{student, "www.denied.example", "", Block, ReasonGroupDeny, "group/students/deny", "denied.example/", ""},
		{staff, "denied.example", "", Allow, ReasonDefault, "", "", ""},
		{student, "denysite.example", "", Block, ReasonGroupDeny, "school-deny", "denysite.example/", ""},
		// Allow entries for host/ allow pages, not the name.
		{student, "kids.example", "", Block, ReasonCategory, "adult", "kids.example", ""},
		{student, "kids.example", "/songs", Allow, ReasonGroupAllow, "group/students/allow", "kids.example/", ""},
		{student, "allowsite.example", "", Block, ReasonCategory, "adult", "allowsite.example", ""},
		{student, "allowsite.example", "/x", Allow, ReasonGroupAllow, "school-allow", "allowsite.example/", ""},
		// The proxy's URL decisions as before.
		{student, "pathsite.example", "/any/page", Block, ReasonCategory, "phishing-urls", "pathsite.example/", ""},
		{student, "other.example", "/", Allow, ReasonDefault, "", "", ""},
	} {
		d := e.Decide(Request{Client: tt.client, Host: tt.host, Path: tt.path, Time: eveningTime})
		if d.Action != tt.action || d.Reason != tt.reason || d.List != tt.list || d.Entry != tt.entry || d.EntryHash() != tt.hash {
			t.Errorf("%s%s for %s: %s/%s list %q entry %q hash %q; want %s/%s list %q entry %q hash %q", tt.host, tt.path, tt.client,
				d.Action, d.Reason, d.List, d.Entry, d.EntryHash(), tt.action, tt.reason, tt.list, tt.entry, tt.hash)
		}
	}
	for _, host := range []string{"bbc.co.uk", "www.other.example"} {
		r := Request{Client: student, Host: host, Time: eveningTime}
		if n := testing.AllocsPerRun(200, func() { e.Decide(r) }); n != 0 {
			t.Errorf("Decide(%s) allocates %.1f times", host, n)
		}
	}
}
