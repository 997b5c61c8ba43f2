package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/policy"
)

const matchConfig = `
school: {name: Test School}
database: {{dir}}/gatehouse.db
lists:
  - name: phish-urls
    path: {{dir}}/phish.txt
    category: phishing
    format: urls
  - name: iwf
    path: {{dir}}/iwf.txt
    category: iwf
    format: sha256
  - name: doh-ips
    path: {{dir}}/doh-ips.txt
    category: doh
    format: ips
groups:
  students:
    networks: [10.1.0.0/16]
    block: [phishing, doh]
    allow: [allowed.example, "bank.example/login/help"]
  staff:
    networks: [10.2.0.0/16]
    block: []
`

var matchFiles = map[string]string{
	"phish.txt":   "bank.example/login\nphish.example/\n",
	"iwf.txt":     sha("abuse.example/dir/page.html") + "\n" + sha("whole.example/") + "\n",
	"doh-ips.txt": "198.51.100.0/24\n",
}

// TestCheckCanonicalAndIP: `gatehouse check` decides on the same
// canonical URL and the same address as the proxy.
func TestCheckCanonicalAndIP(t *testing.T) {
	path, _ := writeConfig(t, matchConfig, matchFiles)
	for _, tt := range []struct {
		target, action, category, list string
	}{
		{"http://BANK.example/x/../%6Cogin?next=1", "block", "phishing", "phish-urls"},
		{"http://bank.example//LOGIN", "block", "phishing", "phish-urls"},
		{"http://abuse.example/Dir/./%70age.html", "block", "iwf", "restricted"},
		{"http://abuse.example/dir;jsessionid=1/page.html", "block", "iwf", "restricted"},
		{"http://bank.example/x/..;y/LOGIN", "block", "phishing", "phish-urls"},
		{"http://3325256711/dns-query", "block", "doh", "doh-ips"},
		{"0xC6336407", "block", "doh", "doh-ips"},
		{"[::ffff:198.51.100.7]", "block", "doh", "doh-ips"},
		{"http://bank.example/about", "allow", "", ""},
		// An allow entry allows its page and what lies under it, not every
		// URL it is a prefix of; the block entry matches by prefix.
		{"http://bank.example/login/help?q=1", "allow", "", "group/students/allow"},
		{"http://bank.example/Login/Help/faq", "allow", "", "group/students/allow"},
		{"http://bank.example/login/helpdesk-phish", "block", "phishing", "phish-urls"},
		{"http://bank.example/loginx", "block", "phishing", "phish-urls"},
		// A name alone, as the resolver and a CONNECT decide it: a block
		// entry for the whole site blocks it.
		{"www.phish.example", "block", "phishing", "phish-urls"},
		{"whole.example", "block", "iwf", "restricted"},
		{"bank.example", "allow", "", ""},
		// A search for a restricted site's address is that site's block,
		// as the proxy decides it.
		{"https://www.google.co.uk/search?q=abuse.example%2Fdir%2Fpage.html", "block", "iwf", "restricted"},
		{"https://www.bing.com/search?q=HTTP://www.abuse.example/dir/page.html&form=QBLH", "block", "iwf", "restricted"},
		{"https://www.bing.com/search?q=abuse.example%2Fdir%2Fother.html", "rewrite", "", ""}, // safe search, as any search
	} {
		code, out, errs := runCLI(t, "check", "--config", path, "--json", "--client", "10.1.2.3", tt.target)
		if code != 0 {
			t.Fatalf("check %s: exit %d: %s", tt.target, code, errs)
		}
		var r map[string]any
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatal(err)
		}
		if r["action"] != tt.action || r["category"] != tt.category || r["list"] != tt.list {
			t.Errorf("check %s = %s", tt.target, out)
		}
	}
	if code, out, _ := runCLI(t, "check", "--config", path, "--client", "10.1.2.3", "www.phish.example"); code != 0 || !strings.Contains(out, "phish.example/") {
		t.Errorf("check www.phish.example does not name the entry:\n%s", out)
	}
}

// fixedResolver answers every name with the same addresses.
type fixedResolver []netip.Addr

func (f fixedResolver) LookupNetIP(context.Context, netip.Addr, string) ([]netip.Addr, error) {
	return f, nil
}

// TestProxyResolverDirectChecksAddresses: without the DNS front door the
// proxy's own lookups still refuse a listed address, with the decision.
func TestProxyResolverDirectChecksAddresses(t *testing.T) {
	path, dir := writeConfig(t, matchConfig, matchFiles)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	src, err := policy.Sources(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := bl.NewManager(filepath.Join(dir, "cache"), src, cfg.Location(), nil)
	if _, err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	eng, err := policy.New(cfg, m.Index())
	if err != nil {
		t.Fatal(err)
	}
	r := &proxyResolver{direct: fixedResolver{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.9")},
		engine: func() *policy.Engine { return eng }}
	student, staff := netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("10.2.2.3")
	_, err = r.LookupNetIP(context.Background(), student, "doh.example")
	var be *policy.BlockedError
	if !errors.As(err, &be) || be.Addr.String() != "198.51.100.9" || be.Decision.List != "doh-ips" {
		t.Fatalf("student: %v", err)
	}
	if addrs, err := r.LookupNetIP(context.Background(), staff, "doh.example"); err != nil || len(addrs) != 2 {
		t.Errorf("staff: %v %v", addrs, err)
	}
	if _, err := r.LookupNetIP(context.Background(), student, "allowed.example"); err != nil {
		t.Errorf("allowed name: %v", err)
	}
}
