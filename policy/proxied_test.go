package policy

import (
	"net/netip"
	"testing"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
)

func TestProxiedHost(t *testing.T) {
	for host, want := range map[string]string{
		"www-porn-example.translate.goog":       "www.porn.example",
		"my--site-co-uk.translate.goog":         "my-site.co.uk",
		"xn----7sbb4ac0ad0be6cf.translate.goog": "", // one label: no site
		"xn----7sbb-ru.translate.goog":          "xn--7sbb.ru",
		"translate.goog":                        "",
		"www.translate.goog":                    "",
		"a.b.translate.goog":                    "",
		"-porn-example.translate.goog":          "",
		"porn-example-.translate.goog":          "",
		"porn--example.translate.goog":          "",
		"porn-example.translate.goog.evil":      "",
		"porn-example.translate.google":         "",
		"www-porn-example.cdn.ampproject.org":   "www.porn.example",
		"cdn.ampproject.org":                    "",
	} {
		got, ok := ProxiedHost(host)
		if got != want || ok != (want != "") {
			t.Errorf("ProxiedHost(%q) = %q, %v; want %q", host, got, ok, want)
		}
	}
}

// TestTranslateProxyDecidesSite: Google Translate's website proxy serves a
// site whole under a name of its own (www-porn-example.translate.goog), so
// a name the lists do not know would let a pupil reach any blocked site. The
// name is decided as the site too: its block, marked as a bypass attempt;
// a restricted site's block without the site in plain text; the site's
// allow entry and an unlisted site still let the translation through.
func TestTranslateProxyDecidesSite(t *testing.T) {
	e, _ := setup(t, testConfig, testFiles)
	student := netip.MustParseAddr("10.1.5.5")
	d := e.Decide(Request{Client: student, Host: "www-porn-example.translate.goog", Time: lessonTime})
	if d.Action != Block || !d.Bypass || d.Category != bl.Pornography || d.Proxied != "www.porn.example" || d.Entry != "porn.example" {
		t.Errorf("translated porn site = %+v", d)
	}
	d = e.Decide(Request{Client: student, Host: "bank-example.translate.goog", Path: "/login?x=1", Time: lessonTime})
	if d.Action != Block || d.Category != bl.Phishing || !d.Bypass {
		t.Errorf("translated phishing URL = %+v", d)
	}
	if d = e.Decide(Request{Client: student, Host: "bank-example.translate.goog", Path: "/about", Time: lessonTime}); d.Action != Allow {
		t.Errorf("translated unlisted page = %+v", d)
	}
	d = e.Decide(Request{Client: student, Host: "host-example.translate.goog", Path: "/bad/page.html?_x_tr_sl=auto&_x_tr_tl=en", Time: lessonTime})
	if d.Action != Block || !d.Restricted || d.Proxied != "" || d.Entry != "" {
		t.Errorf("translated restricted URL = %+v", d)
	}
	// Nested: the proxy's name for its own name for the site.
	if d = e.Decide(Request{Client: student, Host: "www--porn--example-translate-goog.translate.goog", Time: lessonTime}); d.Action != Block {
		t.Errorf("nested translation = %+v", d)
	}
	for _, host := range []string{"www-bbc-co-uk.translate.goog", "teach-games-example.translate.goog", "translate.goog"} {
		if d := e.Decide(Request{Client: student, Host: host, Time: lessonTime}); d.Action != Allow || d.Bypass {
			t.Errorf("%s = %+v", host, d)
		}
	}
	// Staff do not block games: the site's decision is the group's.
	if d := e.Decide(Request{Client: netip.MustParseAddr("10.2.0.1"), Host: "games-example.translate.goog", Time: lessonTime}); d.Action != Allow {
		t.Errorf("staff translated games = %+v", d)
	}
}

func TestProxiedURL(t *testing.T) {
	for _, tt := range []struct{ host, path, site, sitePath string }{
		{"web.archive.org", "/web/20200101000000/https:/www.porn.example/x?y=1", "www.porn.example", "/x?y=1"},
		{"web.archive.org", "/web/20200101000000im_/http:/porn.example/a.jpg", "porn.example", "/a.jpg"},
		{"web.archive.org", "/web/2020*/porn.example", "porn.example", "/"},
		{"wayback.archive.org", "/web/https:/porn.example/", "porn.example", "/"},
		{"web.archive.org", "/web/*/porn.example/*", "porn.example", "/*"},
		{"web.archive.org", "/web/2020/HTTPS:/Porn.Example:8080/", "porn.example", "/"},
		{"web.archive.org", "/web/2020/https:/192.0.2.7/", "192.0.2.7", "/"},
		{"external-content.duckduckgo.com", "/iu/?u=https%3A%2F%2Fporn.example%2Fa.jpg&f=1", "porn.example", "/a.jpg"},
		{"translate.google.co.uk", "/translate?sl=auto&tl=en&u=http://porn.example/page", "porn.example", "/page"},
		{"translate.google.com", "/website?u=porn.example", "porn.example", "/"},
		{"web.archive.org", "/", "", ""},
		{"web.archive.org", "/web/2020/", "", ""},
		{"web.archive.org", "/details/something", "", ""},
		{"external-content.duckduckgo.com", "/ip3/porn.example.ico", "", ""},
		{"translate.google.com", "/?u=porn.example", "", ""},
		{"archive.org.evil.example", "/web/2020/porn.example/", "", ""},
	} {
		site, sp, ok := ProxiedURL(tt.host, tt.path)
		if site != tt.site || sp != tt.sitePath || ok != (tt.site != "") {
			t.Errorf("ProxiedURL(%s, %s) = %q %q %v; want %q %q", tt.host, tt.path, site, sp, ok, tt.site, tt.sitePath)
		}
	}
}

// TestArchiveDecidesPage: a page carried in a proxy's or archive's URL
// (the Wayback Machine's copy of a blocked site, DuckDuckGo's image proxy)
// is blocked as that page would be, as a bypass attempt, in whatever
// spelling the request gives it; the archive's other pages and its copies
// of allowed sites are not.
func TestArchiveDecidesPage(t *testing.T) {
	e, _ := setup(t, testConfig, testFiles)
	student := netip.MustParseAddr("10.1.5.5")
	for _, p := range []string{"/web/20200101000000/https://www.porn.example/", "/web/2020id_/http:/%50ORN.example/x", "/web/porn.example"} {
		d := e.Decide(Request{Client: student, Host: "web.archive.org", Path: p, Time: lessonTime})
		if d.Action != Block || !d.Bypass || d.Category != bl.Pornography || d.Proxied != "www.porn.example" && d.Proxied != "porn.example" {
			t.Errorf("archived %s = %+v", p, d)
		}
	}
	if d := e.Decide(Request{Client: student, Host: "web.archive.org", Path: "/web/2021/https://bank.example/login", Time: lessonTime}); d.Action != Block || d.Category != bl.Phishing {
		t.Errorf("archived phishing URL = %+v", d)
	}
	d := e.Decide(Request{Client: student, Host: "web.archive.org", Path: "/web/2021/https://host.example/bad/page.html", Time: lessonTime})
	if d.Action != Block || !d.Restricted || d.Proxied != "" {
		t.Errorf("archived restricted page = %+v", d)
	}
	d = e.Decide(Request{Client: student, Host: "external-content.duckduckgo.com", Path: "/iu/?u=https%3A%2F%2Fporn.example%2Fa.jpg&f=1", Time: lessonTime})
	if d.Action != Block || !d.Bypass {
		t.Errorf("image proxy = %+v", d)
	}
	for _, p := range []string{"/web/2020/https://www.bbc.example/", "/web/", "/about/", "/web/2020/https://bank.example/about"} {
		if d := e.Decide(Request{Client: student, Host: "web.archive.org", Path: p, Time: lessonTime}); d.Action != Allow || d.Bypass {
			t.Errorf("archive %s = %+v", p, d)
		}
	}
}

// TestDuckDuckGoPagesSafe: DuckDuckGo's html and lite pages, where a
// pupil's kp=-2 turns safe search off, get the safe endpoint in DNS for a
// group with safe search, as its main names do.
func TestDuckDuckGoPagesSafe(t *testing.T) {
	e, _ := setup(t, testConfig, testFiles)
	for _, host := range []string{"duckduckgo.com", "html.duckduckgo.com", "lite.duckduckgo.com"} {
		d := e.Decide(Request{Client: netip.MustParseAddr("10.1.5.5"), Host: host, Time: lessonTime})
		if d.Action != Rewrite || d.Rewrite != bl.DuckDuckGoSafe {
			t.Errorf("%s = %+v", host, d)
		}
	}
}

// TestParentAllowKeepsBypassBlocks: an allow entry for a parent domain
// ("google.com", allowed for a lesson) lifts blocks under it, but not a
// filter-bypass block listed for the name more specifically (dns.google.com,
// a DoH server): otherwise one allow entry opens DNS-over-HTTPS to every
// pupil. An allow entry for the name itself still lifts it, and parent
// allows keep lifting other categories.
func TestParentAllowKeepsBypassBlocks(t *testing.T) {
	cfg := `
school: {name: Test School, timezone: Europe/London}
database: {{dir}}/gatehouse.db
lists:
  - {name: doh, path: "{{dir}}/doh.txt", category: doh}
  - {name: games, path: "{{dir}}/games.txt", category: games}
  - {name: lesson, path: "{{dir}}/lesson.txt"}
groups:
  students:
    networks: [10.1.0.0/16]
    block: [doh, games]
    allow: [google.example, dns2.google.example, play.example]
    allow_lists: [lesson]
`
	e, _ := setup(t, cfg, map[string]string{
		"doh.txt":    "dns.google.example\ndns2.google.example\ndoh.school-apps.example\n",
		"games.txt":  "arcade.play.example\n",
		"lesson.txt": "school-apps.example\n",
	})
	student := netip.MustParseAddr("10.1.5.5")
	for host, want := range map[string]Action{
		"dns.google.example":      Block, // DoH under an allowed parent
		"dns2.google.example":     Allow, // allowed by name
		"www.google.example":      Allow, // the parent's allow
		"arcade.play.example":     Allow, // a parent's allow still lifts other categories
		"doh.school-apps.example": Block, // under an allow list's parent entry too
		"www.school-apps.example": Allow,
	} {
		if d := e.Decide(Request{Client: student, Host: host, Time: lessonTime}); d.Action != want {
			t.Errorf("%s = %v (%s), want %v", host, d.Action, d.Reason, want)
		}
	}
}
