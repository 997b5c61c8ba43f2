package config

import (
	"strings"
	"testing"
)

func TestContentCheckDefaults(t *testing.T) {
	c, err := Parse([]byte("groups:\n  students: {block: []}\n  staff: {block: []}\n  guests: {block: [], content_check: ON}\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !c.ContentCheck("students") || c.ContentCheck("staff") || !c.ContentCheck("guests") || c.ContentCheck("nobody") {
		t.Error("content_check: on for students and guests (set), off for staff and unknown groups")
	}
	if c.ContentMaxBytes() != DefaultContentMaxBytes {
		t.Errorf("max_bytes %d", c.ContentMaxBytes())
	}
	for host, want := range map[string]bool{"chatgpt.com": true, "claude.ai": true, "api.openai.com": true, "openai.com": false, "example.com": false} {
		if c.AIHost(host) != want {
			t.Errorf("AIHost(%s) = %v", host, !want)
		}
	}
	// Support services and the never-decrypt list are never scored.
	for host, want := range map[string]bool{"www.childline.org.uk": true, "samaritans.org": true, "www.nhs.uk": true, "news.example": false} {
		if c.ContentExempt(host) != want {
			t.Errorf("ContentExempt(%s) = %v", host, !want)
		}
	}
	c, err = Parse([]byte("proxy:\n  content_check:\n    max_bytes: 256KiB\n    ai_hosts: [chat.example.org]\n    exempt: [help.example.org]\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.ContentMaxBytes() != 256<<10 || !c.AIHost("chat.example.org") || !c.ContentExempt("www.help.example.org") || !c.AIHost("chatgpt.com") {
		t.Error("proxy.content_check additions not applied")
	}
}

func TestContentCheckValidation(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"proxy:\n  content_check:\n    max_bytes: 10\n", "t.yaml:3:16: proxy.content_check.max_bytes: must be between 1KiB and 64MiB"},
		{"proxy:\n  content_check:\n    max_bytes: 1GiB\n", "t.yaml:3:16: proxy.content_check.max_bytes: must be between"},
		{"proxy:\n  content_check:\n    ai_hosts: [co.uk]\n", `t.yaml:3:16: proxy.content_check.ai_hosts[0]: "co.uk" is not a site's domain name`},
		{"proxy:\n  content_check:\n    exempt: [\"bad host!\"]\n", "t.yaml:3:14: proxy.content_check.exempt[0]:"},
		{"groups:\n  students:\n    content_check: maybe\n", `t.yaml:3:20: groups.students.content_check: unknown value "maybe" (want on or off)`},
		{"watchlists:\n  themes:\n    drugs: {content_report: 50, content_block: 40}\n", "t.yaml:3:48: watchlists.themes.drugs.content_block: must be higher than content_report (50)"},
		{"watchlists:\n  themes:\n    drugs: {content_block: 20}\n", "watchlists.themes.drugs.content_block: must be higher than content_report (30)"},
		{"watchlists:\n  themes:\n    drugs: {content_report: -5}\n", "watchlists.themes.drugs.content_report: must be between 1 and 10000, or -1 for off"},
	} {
		_, err := Parse([]byte(tc.src), "t.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.src, err, tc.want)
		}
	}
	// Report only: block off.
	if _, err := Parse([]byte("watchlists:\n  themes:\n    drugs: {content_report: 50, content_block: -1}\n"), "t.yaml"); err != nil {
		t.Errorf("block off: %v", err)
	}
}
