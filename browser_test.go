package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBrowserHTTPSBlockPage runs Debian's chromium (headless) through the
// proxy with an NSS database that trusts the school's CA: an HSTS-preloaded
// blocked site (www.paypal.com) shows Gatehouse's block page, not a
// browser error; a profile without the CA gets chromium's error page.
// Skipped where chromium or certutil (libnss3-tools) is not installed.
func TestBrowserHTTPSBlockPage(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium not installed (apt-get install chromium libnss3-tools)")
	}
	certutil, err := exec.LookPath("certutil")
	if err != nil {
		t.Skip("certutil not installed (apt-get install libnss3-tools)")
	}
	upstream := testUpstream(t)
	path, dir := writeConfig(t, `
school: {name: Browser Test School}
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy: {listen: "127.0.0.1:0"}
dns: {listen: ["127.0.0.1:0"], upstreams: ["`+upstream+`"]}
groups:
  students:
    block: []
    deny: [paypal.com]
`, nil)
	if code, _, errs := runCLI(t, "ca", "init", "--config", path); code != exitOK {
		t.Fatalf("ca init: %s", errs)
	}
	s, _, _ := startServing(t, path)

	page := func(trust bool) string {
		t.Helper()
		home := t.TempDir()
		if trust {
			db := "sql:" + filepath.Join(home, ".pki", "nssdb")
			if err := os.MkdirAll(filepath.Join(home, ".pki", "nssdb"), 0o700); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{
				{"-d", db, "-N", "--empty-password"},
				{"-d", db, "-A", "-t", "C,,", "-n", "school-ca", "-i", filepath.Join(dir, "ca", "ca.pem")},
			} {
				if out, err := exec.Command(certutil, args...).CombinedOutput(); err != nil {
					t.Fatalf("certutil %v: %v\n%s", args, err, out)
				}
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
			"--no-first-run", "--disable-background-networking", "--disable-component-update",
			"--proxy-server=http://"+s.proxyAddr.String(), "--user-data-dir="+filepath.Join(home, "profile"),
			"--dump-dom", "https://www.paypal.com/signin")
		cmd.Env = append(os.Environ(), "HOME="+home)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("chromium: %v", err)
		}
		return string(out)
	}
	dom := page(true)
	for _, want := range []string{"Blocked: www.paypal.com", "Browser Test School", "GH-", "/.gatehouse/report"} {
		if !strings.Contains(dom, want) {
			t.Errorf("trusting browser: page lacks %q:\n%.600s", want, dom)
		}
	}
	// Without the CA: chromium's certificate error ("Privacy error", which
	// names the CA), never the page.
	if dom := page(false); strings.Contains(dom, "/.gatehouse/report") || strings.Contains(dom, "Blocked: www.paypal.com") {
		t.Errorf("a browser without the CA got the block page:\n%.600s", dom)
	}
}
