package config

import (
	"os"
	"path/filepath"
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
