package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/gatehouse-filter/gatehouse/internal/browsertest"
)

// TestBrowserDNSBlockPageHTTPS pins what a pupil's chromium shows for an
// https:// address (nearly every site; always for an HSTS one, which it
// never tries over http) that DNS answered with the block page's address,
// as the README says: without the school's CA, a connection error; with
// it, the block page on a device that trusts the CA, and a certificate
// error on one that does not; for a group with decrypt: off, a TLS error.
func TestBrowserDNSBlockPageHTTPS(t *testing.T) {
	browsertest.Chromium(t)
	certutil, err := exec.LookPath("certutil")
	if err != nil {
		t.Skip("certutil not installed (apt-get install libnss3-tools)")
	}
	port := useBlockPageTLSPort(t)

	upstream := testUpstream(t)
	setup := func(t *testing.T, decrypt string, ca bool) (dir string) {
		t.Helper()
		path, dir := writeConfig(t, `
school: {name: Hillside Test School}
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy: {listen: "127.0.0.1:0"}
clients: {allow: [127.0.0.1/32]}
dns:
  listen: ["127.0.0.1:0"]
  upstreams: ["`+upstream+`"]
  block_response: blockpage
  block_page_ip: 127.0.0.1
lists:
  - {name: adult, path: "{{dir}}/adult.txt", category: pornography}
groups:
  students: {networks: [127.0.0.0/8], block: [pornography], decrypt: `+decrypt+`}
`, map[string]string{"adult.txt": "porn.example\n"})
		if ca {
			if code, _, errs := runCLI(t, "ca", "init", "--config", path); code != exitOK {
				t.Fatalf("ca init: %s", errs)
			}
		}
		startServing(t, path)
		return dir
	}
	// open shows https://www.porn.example/ (the DNS answer: the block
	// page's address) in a fresh chromium, trusting the CA in dir's ca/ if
	// trust, and returns the page's text or the navigation's error.
	open := func(t *testing.T, dir string, trust bool) (text string, navErr error) {
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
		ctx := browsertest.Start(t, chromedp.Env("HOME="+home),
			chromedp.Flag("host-resolver-rules", "MAP www.porn.example 127.0.0.1"))
		_, navErr = chromedp.RunResponse(ctx, chromedp.Navigate("https://www.porn.example:"+strconv.Itoa(port)+"/biology"))
		text, _ = chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		return text, navErr
	}
	blockPage := func(text string) bool {
		return strings.Contains(text, "Hillside Test School") && strings.Contains(text, "This site is blocked")
	}

	t.Run("no CA", func(t *testing.T) {
		dir := setup(t, "blocks", false)
		text, err := open(t, dir, false)
		if err == nil || !strings.Contains(err.Error(), "ERR_CONNECTION_REFUSED") || blockPage(text) {
			t.Errorf("without the school's CA: %v\n%s", err, text)
		}
	})
	t.Run("CA trusted", func(t *testing.T) {
		dir := setup(t, "blocks", true)
		if text, err := open(t, dir, true); err != nil || !blockPage(text) {
			t.Errorf("a device trusting the CA: %v\n%s", err, text)
		}
		text, err := open(t, dir, false)
		if err == nil || !strings.Contains(err.Error(), "ERR_CERT_AUTHORITY_INVALID") || blockPage(text) {
			t.Errorf("a device without the CA: %v\n%s", err, text)
		}
	})
	t.Run("decrypt off", func(t *testing.T) {
		dir := setup(t, "off", true)
		text, err := open(t, dir, true)
		if err == nil || !strings.Contains(err.Error(), "ERR_SSL_PROTOCOL_ERROR") || blockPage(text) {
			t.Errorf("a group with decrypt: off: %v\n%s", err, text)
		}
	})
}
