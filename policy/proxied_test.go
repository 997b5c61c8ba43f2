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
