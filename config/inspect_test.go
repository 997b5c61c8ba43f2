package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestInspectDefaultsAndPaths(t *testing.T) {
	c, err := Parse([]byte("database: /var/lib/gatehouse/g.db\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.CACertFile() != filepath.FromSlash("/var/lib/gatehouse/ca/ca.pem") || c.CAKeyFile() != filepath.FromSlash("/var/lib/gatehouse/ca/ca.key") {
		t.Errorf("CA files %s %s", c.CACertFile(), c.CAKeyFile())
	}
	if c.Proxy.Inspect.LeafCache != DefaultLeafCache {
		t.Errorf("leaf_cache %d", c.Proxy.Inspect.LeafCache)
	}
	// Once a CA exists: search for students, blocks for the others.
	if m := c.Groups["students"].DecryptMode(); m != DecryptSearch {
		t.Errorf("students decrypt %q", m)
	}
	if m := c.Groups["staff"].DecryptMode(); m != DecryptBlocks {
		t.Errorf("staff decrypt %q", m)
	}
	c, err = Parse([]byte("proxy:\n  inspect:\n    ca_cert: /etc/g/ca.pem\n    ca_key: /etc/g/ca.key\ngroups:\n  students:\n    block: []\n    decrypt: OFF\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.CACertFile() != "/etc/g/ca.pem" || c.CAKeyFile() != "/etc/g/ca.key" || c.Groups["students"].DecryptMode() != DecryptOff {
		t.Errorf("named files or decrypt not applied: %s %s %s", c.CACertFile(), c.CAKeyFile(), c.Groups["students"].DecryptMode())
	}
}

func TestInspectValidation(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"proxy:\n  inspect:\n    ca_cert: /x.pem\n", "t.yaml:3:14: proxy.inspect.ca_cert: ca_cert and ca_key go together"},
		{"proxy:\n  inspect:\n    ca_cert: /g/ca.pem\n    ca_key: /g/./ca.pem\n", "t.yaml:4:13: proxy.inspect.ca_key: ca_cert and ca_key must be two files"},
		{"proxy:\n  inspect:\n    leaf_cache: 5\n", "t.yaml:3:17: proxy.inspect.leaf_cache: must be between"},
		{"groups:\n  students:\n    decrypt: everything\n", `t.yaml:3:14: groups.students.decrypt: unknown decrypt mode "everything"`},
		{"proxy:\n  inspect:\n    never_decrypt: [mybank.example, \"bad host!\"]\n", "t.yaml:3:37: proxy.inspect.never_decrypt[1]:"},
		{"proxy:\n  inspect:\n    search_hosts: [co.uk]\n", "proxy.inspect.search_hosts[0]: \"co.uk\" is not a site's domain name"},
		{"proxy:\n  inspect:\n    pinned_apps: always\n", `t.yaml:3:18: proxy.inspect.pinned_apps: unknown value "always" (want report or tunnel)`},
	} {
		_, err := Parse([]byte(tc.src), "t.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.src, err, tc.want)
		}
	}
}

// TestPinnedAppsSetting: report by default; tunnel is accepted, with a
// warning naming the groups that decrypt all.
func TestPinnedAppsSetting(t *testing.T) {
	c, err := Parse([]byte("database: /tmp/g.db\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Proxy.Inspect.PinnedApps != PinnedReport || c.PinnedTunnels() {
		t.Errorf("default pinned_apps %q", c.Proxy.Inspect.PinnedApps)
	}
	c, err = Parse([]byte("proxy:\n  inspect:\n    pinned_apps: Tunnel\ngroups:\n  students:\n    block: []\n    decrypt: all\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(c.Warnings(), "\n")
	if !c.PinnedTunnels() || !strings.Contains(w, "t.yaml:3:18: proxy.inspect.pinned_apps: tunnel: any device") || !strings.Contains(w, "students decrypt all") {
		t.Errorf("pinned_apps: tunnel %v, warnings:\n%s", c.PinnedTunnels(), w)
	}
	c, err = Parse([]byte("proxy:\n  inspect:\n    pinned_apps: tunnel\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("no group decrypts all, yet warned: %v", w)
	}
}

func TestDecryptModesParse(t *testing.T) {
	c, err := Parse([]byte("groups:\n  students: {block: [], decrypt: ALL}\n  staff: {block: [], decrypt: search}\n  guests: {block: [], decrypt: off}\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for g, want := range map[string]string{"students": DecryptAll, "staff": DecryptSearch, "guests": DecryptOff} {
		if m := c.Groups[g].DecryptMode(); m != want {
			t.Errorf("%s: %q, want %q", g, m, want)
		}
	}
}

func TestDecryptHostTables(t *testing.T) {
	c, err := Parse([]byte(`proxy:
  inspect:
    never_decrypt: [MyBank.Example]
    search_hosts: [search.example]
groups:
  students: {block: [], decrypt: search}
  staff: {block: [], decrypt: all}
  guests: {block: [], decrypt: blocks}
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		group, host string
		want        bool
	}{
		{"students", "www.google.com", true},
		{"students", "www.youtube.com", true},
		{"students", "en.wikipedia.org", true},
		{"students", "search.example", true}, // added in config
		{"students", "news.example", false},
		{"students", "accounts.google.com", false},
		{"staff", "news.example", true},
		{"staff", "www.nhs.uk", false},            // built-in never-decrypt
		{"staff", "online.mybank.example", false}, // added never-decrypt
		{"staff", "m.google.com", false},
		{"staff", "mdmenrollment.apple.com", false},
		{"staff", "manage.microsoft.com", false},
		{"staff", "notnhs.uk", true}, // a label boundary, not a suffix
		{"guests", "www.google.com", false},
		{"nobody", "www.google.com", false},
	} {
		if got := c.DecryptsAllowed(tc.group, tc.host); got != tc.want {
			t.Errorf("DecryptsAllowed(%s, %s) = %v", tc.group, tc.host, got)
		}
	}
	if !c.NeverDecrypt("www.gov.uk") || c.NeverDecrypt("example.com") {
		t.Error("NeverDecrypt")
	}
	for _, want := range []string{"nhs.uk", "gov.uk", "m.google.com", "apple.com", "manage.microsoft.com", "whatsapp.net"} {
		if !slices.Contains(BuiltinNeverDecrypt(), want) {
			t.Errorf("built-in never-decrypt list lacks %s", want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { c.DecryptsAllowed("students", "a.b.c.www.youtube.com") }); n != 0 {
		t.Errorf("DecryptsAllowed allocates %v", n)
	}
}

func TestUpstreamCAFileCheck(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "g.yaml")
	for file, want := range map[string]string{
		filepath.Join(dir, "missing.pem"): "g.yaml:3:21: proxy.upstream_ca_file: cannot read upstream CA file",
		bad:                               "g.yaml:3:21: proxy.upstream_ca_file: " + bad + " holds no PEM certificate",
	} {
		src := "database: " + filepath.Join(dir, "g.db") + "\nproxy:\n  upstream_ca_file: " + file + "\n"
		if err := os.WriteFile(cfgFile, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadChecked(cfgFile); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", file, err, want)
		}
		if _, err := Parse([]byte(src), cfgFile); err != nil { // serve's parse does not read files
			t.Errorf("Parse: %v", err)
		}
	}
}
