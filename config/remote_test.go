package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRemoteConfig(t *testing.T) {
	d := Default()
	if d.DNS.Remote.Enabled() || d.DNS.Remote.RateLimit.QPS != DefaultRemoteTokenQPS || d.DNS.Remote.Reload != DefaultRemoteReload {
		t.Fatalf("defaults %+v", d.DNS.Remote)
	}
	checkErrors(t, `dns:
  remote:
    host: "not a host"
    doh_listen: [":443"]
    dot_listen: ["nope"]
    cert: /nonexistent/cert.pem
    rate_limit: {qps: 0}
    address_rate_limit: {qps: 10, burst: 5}
    reload: 5m
`, []want{
		{"2:3", "dns.remote.key", "needed for the off-site listeners"},
		{"3:11", "dns.remote.host", "invalid host name"},
		{"5:18", "dns.remote.dot_listen[0]", "missing port"},
		{"6:11", "dns.remote.cert", "cannot read"},
		{"7:23", "dns.remote.rate_limit.qps", "must be positive"},
		{"8:42", "dns.remote.address_rate_limit.burst", "must be at least qps"},
		{"9:13", "dns.remote.reload", "must be between 100ms and 1m"},
	})
	checkErrors(t, `dns:
  remote:
    host: filter.school.example
    dot_listen: [":853"]
    acme: true
`, []want{
		{"2:3", "dns.remote.acme_cache", "a directory"},
		{"4:5", "dns.remote.dot_listen", "*.HOST"},
		{"5:11", "dns.remote.acme", "needs a doh_listen"},
	})
	dir := t.TempDir()
	for _, f := range []string{"c.pem", "k.pem"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c, err := Parse([]byte("dns:\n  remote:\n    host: filter.school.example\n    doh_listen: [\":443\"]\n    dot_listen: [\":853\"]\n    cert: "+
		filepath.Join(dir, "c.pem")+"\n    key: "+filepath.Join(dir, "k.pem")+"\n"), testFile)
	if err != nil || !c.DNS.Remote.Enabled() {
		t.Fatalf("valid remote config: %v", err)
	}
}

// TestRemoteACMEConfig: the ACME directory must be https, its CA file must
// hold certificates, and a DoH listener off port 443 is a warning (port
// 443 may be forwarded to it), not an error.
func TestRemoteACMEConfig(t *testing.T) {
	if d := Default(); d.DNS.Remote.ACMEDirectory != DefaultACMEDirectory {
		t.Fatalf("default acme_directory %q", d.DNS.Remote.ACMEDirectory)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	checkErrors(t, `dns:
  remote:
    host: filter.school.example
    doh_listen: [":443"]
    acme: true
    acme_cache: /var/lib/gatehouse/acme
    acme_directory: http://ca.school.example/dir
    acme_ca_file: `+bad+`
`, []want{
		{"7:21", "dns.remote.acme_directory", "https:// URL"},
		{"8:19", "dns.remote.acme_ca_file", "does not parse"},
	})
	c, err := Parse([]byte(`dns:
  remote:
    host: filter.school.example
    doh_listen: ["127.0.0.1:8443"]
    acme: true
    acme_cache: /var/lib/gatehouse/acme
    acme_directory: https://acme-staging-v02.api.letsencrypt.org/directory
`), testFile)
	if err != nil {
		t.Fatalf("ACME on port 8443: %v", err)
	}
	if w := strings.Join(c.Warnings(), "\n"); !strings.Contains(w, "dns.remote.doh_listen") || !strings.Contains(w, "forward public port 443") {
		t.Fatalf("warnings %q", w)
	}
	c, err = Parse([]byte(`dns:
  remote:
    host: filter.school.example
    doh_listen: [":443"]
    acme: true
    acme_cache: /var/lib/gatehouse/acme
`), testFile)
	if err != nil || len(c.Warnings()) != 0 || c.DNS.Remote.ACMEDirectory != DefaultACMEDirectory {
		t.Fatalf("ACME on :443: %v %q", err, c.Warnings())
	}
}
