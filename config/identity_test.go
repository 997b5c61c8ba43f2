package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestIdentityConfig(t *testing.T) {
	d := Default()
	if d.Identity.MaxAddresses != DefaultIdentityMax || d.Identity.Window.D() != DefaultIdentityWindow ||
		d.Identity.RADIUS.Timeout.D() != DefaultRADIUSTimeout || d.Identity.RADIUS.Listen != "" {
		t.Fatalf("defaults %+v", d.Identity)
	}
	checkErrors(t, `identity:
  groups:
    - match: "[oops"
      group: pupils
  max_addresses: 10
  window: 2h
  radius:
    listen: "127.0.0.1:1813"
    nas: [0.0.0.0/0]
    timeout: 10s
  dhcp_leases:
    - path: /var/lib/dhcp/dhcpd.leases
      format: iscd
    - path: /var/lib/dhcp/dhcpd.leases
      format: kea
`, []want{
		{"3:14", "identity.groups[0].match", "invalid pattern"},
		{"4:14", "identity.groups[0].group", `no group named "pupils"`},
		{"5:18", "identity.max_addresses", "must be between 1024 and 1048576"},
		{"6:11", "identity.window", "must be between 0s and 1h"},
		{"7:3", "identity.radius.secret", "needs the shared secret"},
		{"9:11", "identity.radius.nas[0]", "would take accounting from anyone"},
		{"10:14", "identity.radius.timeout", "must be between 1m and 7d"},
		{"13:15", "identity.dhcp_leases[0].format", `unknown lease file format "iscd"`},
		{"14:13", "identity.dhcp_leases[1].path", "is also identity.dhcp_leases[0]"},
	})
	// A pattern is checked in the form it is compared in (user names'
	// canonical form): full-width brackets are ASCII ones there.
	checkErrors(t, "groups:\n  students: {block: [], networks: [10.0.0.0/8]}\nidentity:\n  groups:\n    - {match: \"*@school.example\", group: students}\n    - {match: \"［oops\", group: students}\n", []want{
		{"6:15", "identity.groups[1].match", `invalid pattern "［oops" (compared as "[oops")`},
	})
	checkErrors(t, `identity:
  radius:
    listen: "127.0.0.1:1813"
    secret: {file: /etc/gatehouse/radius-secret, env: RADIUS_SECRET}
`, []want{
		{"2:3", "identity.radius.nas", "list the controllers"},
		{"4:5", "identity.radius.secret", `either "file:" or "env:"`},
	})
}

// TestIdentitySecretNotDumped: the config, as the change log or any dump
// shows it, names where the RADIUS secret is, never its value.
func TestIdentitySecretNotDumped(t *testing.T) {
	t.Setenv("GH_RADIUS_SECRET", "hunter2-radius")
	c, err := Parse([]byte("identity:\n  radius:\n    listen: 127.0.0.1:1813\n    secret: {env: GH_RADIUS_SECRET}\n    nas: [127.0.0.1/32]\n"), testFile)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := c.Identity.RADIUS.Secret.Read(); err != nil || v != "hunter2-radius" {
		t.Fatalf("secret %q %v", v, err)
	}
	for _, ch := range Diff(Default(), c) {
		if strings.Contains(ch.Text, "hunter2") {
			t.Fatalf("change shows the secret: %s", ch.Text)
		}
	}
	if s := c.Identity.RADIUS.Secret.String(); strings.Contains(s, "hunter2") {
		t.Fatalf("String shows the secret: %s", s)
	}
}

func TestLDAPConfig(t *testing.T) {
	d := Default()
	if l := d.Identity.LDAP; l.URL != "" || l.CacheTTL.D() != DefaultLDAPCacheTTL || l.Timeout.D() != DefaultLDAPTimeout || l.Attributes.Display != "displayName" {
		t.Fatalf("defaults %+v", l)
	}
	checkErrors(t, `identity:
  ldap:
    url: ldap://dc1.school.example
    user_filter: "sAMAccountName=%s"
    service_dn: CN=gatehouse,OU=Service,DC=school,DC=example
    groups:
      - dn: Students
        group: pupils
    cache_ttl: 48h
    timeout: 0s
`, []want{
		{"2:3", "identity.ldap.base_dn", "needed to search"},
		{"2:3", "identity.ldap.service_password", "needs its password"},
		{"3:10", "identity.ldap.url", "sends passwords in clear"},
		{"4:18", "identity.ldap.user_filter", "filter in parentheses"},
		{"7:13", "identity.ldap.groups[0].dn", "want a group's DN"},
		{"8:16", "identity.ldap.groups[0].group", `no group named "pupils"`},
		{"9:16", "identity.ldap.cache_ttl", "must be between 0s and 1d"},
		{"10:14", "identity.ldap.timeout", "must be between 1s and 1m"},
	})
	checkErrors(t, `identity:
  ldap:
    url: ldaps://dc1.school.example
    start_tls: true
`, []want{
		{"2:3", "identity.ldap", "set service_dn with user_filter"},
		{"4:16", "identity.ldap.start_tls", "is TLS already"},
	})
	checkErrors(t, `identity:
  ldap:
    url: http://dc1.school.example
    bind_dn: "uid=x,dc=school"
`, []want{
		{"3:10", "identity.ldap.url", `unknown scheme "http"`},
		{"4:14", "identity.ldap.bind_dn", "must hold %s"},
	})
	// Plain LDAP loads in a lab, with a loud warning.
	c, err := Parse([]byte("identity:\n  ldap:\n    url: ldap://127.0.0.1\n    plain: true\n    bind_dn: \"uid=%s,dc=lab\"\n"), testFile)
	if err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(c.Warnings(), "\n"); !strings.Contains(w, "PLAIN LDAP") || !strings.Contains(w, "4:") {
		t.Fatalf("warnings %q", w)
	}
	// groups with proxy_login may rely on the directory alone.
	if _, err := Parse([]byte("identity:\n  ldap:\n    url: ldaps://dc1\n    bind_dn: \"%s@school.example\"\ngroups:\n  students:\n    block: []\n    proxy_login: true\n"), testFile); err != nil {
		t.Fatal(err)
	}
}

// TestLDAPSecretNotDumped: the service account's password is never shown.
func TestLDAPSecretNotDumped(t *testing.T) {
	t.Setenv("GH_LDAP_PW", "hunter2-ldap")
	c, err := Parse([]byte("identity:\n  ldap:\n    url: ldaps://dc1\n    base_dn: dc=school\n    user_filter: (uid=%s)\n    service_dn: cn=svc,dc=school\n    service_password: {env: GH_LDAP_PW}\n"), testFile)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := c.Identity.LDAP.ServicePassword.Read(); err != nil || v != "hunter2-ldap" {
		t.Fatalf("secret %q %v", v, err)
	}
	for _, ch := range Diff(Default(), c) {
		if strings.Contains(ch.Text, "hunter2") {
			t.Fatalf("change shows the secret: %s", ch.Text)
		}
	}
	if w := strings.Join(c.Warnings(), "\n"); strings.Contains(w, "hunter2") {
		t.Fatal(w)
	}
}

// TestLDAPCAFileChecked: config check reads identity.ldap.ca_file; a file
// that holds no certificate is an error at its line.
func TestLDAPCAFileChecked(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ca.pem"), []byte("not a certificate\n"), 0o600)
	path := filepath.Join(dir, "gatehouse.yaml")
	os.WriteFile(path, []byte("school: {name: Test}\ndatabase: "+dir+"/g.db\nidentity:\n  ldap:\n    url: ldaps://dc1\n    ca_file: "+dir+"/ca.pem\n    bind_dn: \"%s@school.example\"\n"), 0o600)
	if _, err := Load(path); err != nil {
		t.Fatalf("Load: %v", err)
	}
	_, err := LoadChecked(path)
	if err == nil || !strings.Contains(err.Error(), "gatehouse.yaml:6:14: identity.ldap.ca_file:") || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Fatalf("LoadChecked: %v", err)
	}
}

// TestStripRealmConfig: identity.strip_realm lists the school's own realms
// (a NetBIOS domain, a DNS realm); a value that cannot be one is an error
// naming its line, and two entries that are one realm are reported.
func TestStripRealmConfig(t *testing.T) {
	if d := Default(); len(d.Identity.StripRealm) != 0 {
		t.Fatalf("default strip_realm %v, want none", d.Identity.StripRealm)
	}
	checkErrors(t, `identity:
  strip_realm:
    - ""
    - 'SCHOOL\'
    - "@school.local"
    - "school local"
    - "*"
    - SCHOOL
    - school
`, []want{
		{"3:7", "identity.strip_realm[0]", "must not be empty"},
		{"4:7", "identity.strip_realm[1]", "a realm alone"},
		{"5:7", "identity.strip_realm[2]", "a realm alone"},
		{"6:7", "identity.strip_realm[3]", "a realm alone"},
		{"7:7", "identity.strip_realm[4]", "a realm alone"},
		{"9:7", "identity.strip_realm[6]", "is also identity.strip_realm[5]"},
	})
}
