package blocklists

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestScanSquidGuard(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"gambling/domains":    "casino.example\n",
		"gambling/domains.gz": string(gz([]byte("old.example\n"))),
		"gambling/urls.gz":    string(gz([]byte("example.com/casino\n"))),
		"adult/urls":          "example.org/x\n",
		"adult/usage":         "black\n",
		"empty/usage":         "black\n",
		"empty/expressions":   "(porn)\n",
		"global_usage":        "NAME: adult\n",
	})
	if err := os.Mkdir(filepath.Join(root, "gambling", "domains.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("gambling", filepath.Join(root, "paris")); err != nil {
		t.Fatal(err)
	}
	got, err := ScanSquidGuard(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []SquidList{
		{Dir: "adult", URLs: filepath.Join(root, "adult/urls")},
		{Dir: "gambling", Domains: filepath.Join(root, "gambling/domains"), URLs: filepath.Join(root, "gambling/urls.gz")},
		{Dir: "paris", Domains: filepath.Join(root, "paris/domains"), URLs: filepath.Join(root, "paris/urls.gz")},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}

	// The unpacked tarball: root holds only "blacklists".
	parent := t.TempDir()
	writeFiles(t, parent, map[string]string{"blacklists/vpn/domains": "vpn.example\n"})
	got, err = ScanSquidGuard(parent)
	if err != nil || len(got) != 1 || got[0].Dir != "vpn" {
		t.Errorf("parent dir: %+v, %v", got, err)
	}

	if _, err := ScanSquidGuard(filepath.Join(root, "empty")); err == nil || !strings.Contains(err.Error(), "no squidGuard category directories") {
		t.Errorf("no lists: %v", err)
	}
	if _, err := ScanSquidGuard(filepath.Join(root, "missing")); !os.IsNotExist(err) {
		t.Errorf("missing root: %v", err)
	}
}

func TestScanSquidGuardUT1(t *testing.T) {
	dir, ok := dataDir()
	if !ok {
		t.Skip("shared test data not found")
	}
	root := filepath.Join(dir, "ut1", "blacklists")
	lists, err := ScanSquidGuard(root)
	if err != nil {
		t.Fatal(err)
	}
	byDir := map[string]SquidList{}
	for _, l := range lists {
		byDir[l.Dir] = l
	}
	// 69 category directories; global_usage is a file. (adult has only
	// urls in this copy, malware and phishing only urls too.)
	if len(lists) != 69 || !slices.IsSortedFunc(lists, func(a, b SquidList) int { return strings.Compare(a.Dir, b.Dir) }) {
		t.Errorf("%d lists, sorted %v", len(lists), lists)
	}
	if a := byDir["adult"]; a.Domains != "" || a.URLs != filepath.Join(root, "adult", "urls.gz") {
		t.Errorf("adult: %+v", a)
	}
	if g := byDir["gambling"]; g.Domains != filepath.Join(root, "gambling", "domains.gz") {
		t.Errorf("gambling: %+v", g)
	}
	for name, c := range UT1Categories {
		if _, ok := byDir[name]; !ok {
			t.Errorf("UT1Categories has %q, not a directory of the UT1 copy", name)
		}
		if int(c) >= NumCategories || c.Restricted() {
			t.Errorf("UT1Categories[%q] = %v", name, c)
		}
	}

	// Every mapped list loads cleanly in the format the loader uses.
	for name := range UT1Categories {
		l, ok := byDir[name]
		if !ok {
			continue
		}
		for _, f := range []struct {
			path   string
			format Format
		}{{l.Domains, FormatDomains}, {l.URLs, FormatURLs}} {
			if f.path == "" {
				continue
			}
			var c lenSink
			res, err := ParseFile(f.path, f.format, &c)
			if err != nil || res.Invalid > 0 {
				t.Errorf("%s: %+v, %v", f.path, res, err)
			}
		}
	}
}

func TestUT1Categories(t *testing.T) {
	want := map[string]Category{
		"adult": Pornography, "agressif": Violence, "drogue": Drugs, "gambling": Gambling, "arjel": Gambling,
		"malware": Malware, "phishing": Phishing, "cryptojacking": Malware, "stalkerware": Malware, "ddos": Malware,
		"hacking": Malware, "warez": Piracy, "fakenews": Misinformation, "redirector": WebProxy,
		"residential-proxies": WebProxy, "vpn": VPN, "doh": DoH, "dating": Dating, "games": Games,
		"social_networks": SocialMedia, "chat": Chat, "audio-video": Streaming, "ai": AI,
	}
	for k, v := range want {
		if got, ok := UT1Categories[k]; !ok || got != v {
			t.Errorf("UT1Categories[%q] = %v, %v; want %v", k, got, ok, v)
		}
	}
	for _, k := range []string{"mixed_adult", "strict_redirector", "strong_redirector", "sect", "liste_blanche"} {
		if _, ok := UT1Categories[k]; ok {
			t.Errorf("%q should not be mapped", k)
		}
	}
	if len(UT1Categories) != len(want) {
		t.Errorf("%d mappings, want %d", len(UT1Categories), len(want))
	}
}
