package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/identity/ldaptest"
)

// exampleWithFiles writes the example config with its /etc/gatehouse and
// /var/lib/gatehouse paths moved under a temporary root, and the files it
// names there (files overrides or adds to the defaults, by path under the
// root). It returns the config's path.
func exampleWithFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	text := strings.NewReplacer("/etc/gatehouse/", root+"/etc/", "/var/lib/gatehouse/", root+"/var/",
		"/var/lib/dhcp/", root+"/dhcp/", "/var/lib/kea/", root+"/kea/").Replace(string(config.Example))
	all := map[string]string{
		"etc/proxy-users": "jsmith:$2y$05$abcdefghijklmnopqrstuu5Qk1u4z9mYb8e0xM9S9bWmH1rN2m6a\n", "etc/secrets/iwf-password": "pw\n",
		"etc/smtp-password": "pw\n", "etc/lists/curriculum-allow.txt": "scratch.mit.edu\n", "etc/lists/local-deny.txt": "chatroulette.com\n",
		"var/ut1/blacklists/adult/domains": "porn.example\n", "etc/watchlists/self-harm-local.txt": "# ours\nsad beans | 10\n",
		"etc/people.csv": "user,display name,year,class\n", "etc/radius-secret": "s3cret\n",
		"etc/school-root-ca.pem": string(ldaptest.CAPEM(t)), "etc/ldap-password": "pw\n",
		"etc/signin-secret": "s3cret\n",
		"dhcp/dhcpd.leases": "", "kea/kea-leases4.csv": "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context,pool_id\n",
	}
	certDir := t.TempDir() // the sign-in page's certificate
	wildcardPEM(t, certDir, "signin.school.example")
	for name, file := range map[string]string{"etc/signin.crt": "cert.pem", "etc/signin.key": "key.pem"} {
		b, err := os.ReadFile(filepath.Join(certDir, file))
		if err != nil {
			t.Fatal(err)
		}
		all[name] = string(b)
	}
	for k, v := range files {
		all[k] = v
	}
	for name, data := range all {
		p := filepath.Join(root, name)
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "example.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConfigExampleIsValid(t *testing.T) {
	code, out, _ := runCLI(t, "config", "example")
	if code != 0 || out != string(config.Example) {
		t.Fatalf("config example: %d", code)
	}
	// The example names files under /etc/gatehouse and /var/lib/gatehouse:
	// checked as it is, each missing one is an error at its line.
	path := filepath.Join(t.TempDir(), "example.yaml")
	os.WriteFile(path, []byte(out), 0o600)
	code, _, errs := runCLI(t, "config", "check", path)
	if code != exitUsage {
		t.Fatalf("example with none of its files: exit %d", code)
	}
	for _, want := range []string{"proxy.auth.users_file: cannot read users file /etc/gatehouse/proxy-users",
		"lists[0].path: cannot read the squidGuard tree", "lists[7].path: cannot read list file /etc/gatehouse/lists/curriculum-allow.txt",
		"reports.smtp.password.file", "lists[5].auth.password.file",
		"watchlists.files[0].path: cannot read watchlist file /etc/gatehouse/watchlists/self-harm-local.txt",
		"identity.people: cannot read people file /etc/gatehouse/people.csv",
		"identity.radius.secret.file", "identity.dhcp_leases[0].path: cannot read lease file /var/lib/dhcp/dhcpd.leases",
		"identity.dhcp_leases[1].path", "identity.ldap.ca_file: cannot read CA file /etc/gatehouse/school-root-ca.pem",
		"identity.ldap.service_password.file", "identity.signin.cert: cannot read certificate /etc/gatehouse/signin.crt",
		"identity.signin.client_secret.file", "15 error(s)"} {
		if !strings.Contains(errs, want) {
			t.Errorf("errors lack %q:\n%s", want, errs)
		}
	}
	// With its files in place, it is valid.
	path = exampleWithFiles(t, nil)
	if code, out, errs := runCLI(t, "config", "check", path); code != 0 || !strings.Contains(out, "valid") {
		t.Errorf("example does not check: %d %s %s", code, out, errs)
	}
}

// TestExampleListAdvice follows the example's advice for the school's own
// lists ("one domain or host/path per line") with the formats the example
// gives them (curriculum-allow: domains, local-deny: auto): both kinds of
// line load and decide, for a pupil, as a group's allow: and deny: would.
func TestExampleListAdvice(t *testing.T) {
	t.Setenv("GATEHOUSE_CTIRU_TOKEN", "token") // the example's ctiru feed reads it
	path := exampleWithFiles(t, map[string]string{
		"var/ut1/blacklists/adult/domains": "adult.example\n",
		// A name, and a path on a site the pupils' categories block.
		"etc/lists/curriculum-allow.txt": "allowed.example\nadult.example/biology\n",
		// More host/path lines than names: still both kinds.
		"etc/lists/local-deny.txt": "denied.example\nsite.example/forbidden\nother.example/games/\n",
	})
	for _, tt := range []struct{ target, action, reason string }{
		{"www.denied.example", "block", "group-deny"},
		{"http://site.example/forbidden/page", "block", "group-deny"},
		{"http://other.example/games/x", "block", "group-deny"},
		{"http://site.example/fine", "allow", "default"},
		{"http://adult.example/biology/cells", "allow", "group-allow"},
		{"http://adult.example/other", "block", "category"},
		{"adult.example", "block", "category"},
	} {
		code, out, errs := runCLI(t, "check", "--config", path, "--json", "--client", "10.20.1.5", tt.target)
		var r struct{ Action, Reason string }
		if err := json.Unmarshal([]byte(out), &r); code != 0 || err != nil {
			t.Fatalf("check %s: %d %v %s", tt.target, code, err, errs)
		}
		if r.Action != tt.action || r.Reason != tt.reason {
			t.Errorf("%s for a pupil: %s (%s), want %s (%s)", tt.target, r.Action, r.Reason, tt.action, tt.reason)
		}
	}
}
