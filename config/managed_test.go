package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestManagedListsJoinTheirGroups: the managed file beside the database is
// read with the config; its entries join their group's allow and deny
// entries, a group the config lacks is a warning, and a bad entry is an
// error naming the managed file, its line and the entry.
func TestManagedListsJoinTheirGroups(t *testing.T) {
	dir := t.TempDir()
	src := "database: " + filepath.Join(dir, "gatehouse.db") + "\nclients: {allow: [10.0.0.0/8], default_group: pupils}\ngroups:\n  pupils: {block: [], networks: [10.1.0.0/16]}\n"
	m := &Managed{Groups: map[string]*ManagedGroup{
		"pupils": {Allow: []ManagedEntry{{Entry: "Wiki.Example", Reason: "needed for homework", By: "it@school.example", At: time.Unix(1e9, 0).UTC()}},
			Deny: []ManagedEntry{{Entry: "games.example/play", Reason: "lessons", By: "it@school.example"}}},
		"gone": {Allow: []ManagedEntry{{Entry: "x.example", Reason: "old", By: "it@school.example"}}},
	}}
	path := filepath.Join(dir, ManagedFileName)
	if err := WriteManaged(path, m); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("managed file: %v %v", fi, err)
	}
	c, err := Parse([]byte(src), "gatehouse.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g := c.Groups["pupils"]
	if !slices.Equal(g.ManagedAllow, []string{"Wiki.Example"}) || !slices.Equal(g.ManagedDeny, []string{"games.example/play"}) {
		t.Errorf("managed entries: allow %q deny %q", g.ManagedAllow, g.ManagedDeny)
	}
	if w := strings.Join(c.Warnings(), "\n"); !strings.Contains(w, `group "gone"`) {
		t.Errorf("warnings: %s", w)
	}
	if got := c.ManagedLists().Groups["pupils"].Allow[0]; got.Reason != "needed for homework" || got.By != "it@school.example" {
		t.Errorf("entry read back: %+v", got)
	}

	// A hand edit that breaks an entry rejects the config, naming the file
	// and line.
	bad := "groups:\n  pupils:\n    allow:\n      - entry: ok.example\n        reason: fine\n      - entry: \"bad host!\"\n        reason: why\n      - entry: noreason.example\n"
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Parse([]byte(src), "gatehouse.yaml")
	if err == nil {
		t.Fatal("a bad managed file was accepted")
	}
	for _, want := range []string{path + ":6:9: groups.pupils.allow[1]: invalid entry", path + ":8:9: groups.pupils.allow[2]: entry \"noreason.example\" has no reason"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// TestConsoleOIDC: console.oidc's settings are checked with file:line.
func TestConsoleOIDC(t *testing.T) {
	checkErrors(t, `
console:
  oidc:
    issuer: http://login.example
    client_secret: {file: a, env: B}
    redirect_url: https://console.example/callback
    domains: ["not a domain"]
`, []want{
		{"3:3", "console.oidc.client_id", "client (application) ID"},
		{"4:13", "console.oidc.issuer", "https issuer URL"},
		{"5:5", "console.oidc.client_secret", "either"},
		{"6:19", "console.oidc.redirect_url", "the path must be /signin/oidc/callback"},
		{"7:15", "console.oidc.domains[0]", "not an email domain"},
	})
	// Entra ID's issuer names the tenant, as for the sign-in page.
	checkErrors(t, `
console:
  oidc:
    issuer: https://login.microsoftonline.com/common/v2.0
    client_id: abc
    client_secret: {env: OIDC_SECRET}
    redirect_url: https://console.example/signin/oidc/callback
    domains: [school.example]
`, []want{{"4:13", "console.oidc.issuer", "tenant ID"}})
	c, err := Parse([]byte(`
console:
  oidc:
    issuer: https://accounts.google.com
    client_id: abc
    client_secret: {env: OIDC_SECRET}
    redirect_url: http://127.0.0.1:8080/signin/oidc/callback
    domains: [School.Example]
    trust_idp_mfa: true
`), testFile)
	if err != nil {
		t.Fatal(err)
	}
	if o := c.Console.OIDC; o == nil || o.Domains[0] != "school.example" || !o.TrustIdPMFA {
		t.Errorf("oidc: %+v", o)
	}
}
