package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-filter/gatehouse/tlsinspect"
)

// TestCAInitExportServe: ca init writes the CA beside the database (key
// 0600, directory 0700) and refuses to overwrite it; ca export prints it;
// the admin listener serves it with the deployment page; and the proxy
// started with it shows the block page over HTTPS to a client trusting it.
func TestCAInitExportServe(t *testing.T) {
	upstream := testUpstream(t)
	path, dir := writeConfig(t, `
school: {name: Test School}
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy: {listen: "127.0.0.1:0"}
dns: {listen: ["127.0.0.1:0"], upstreams: ["`+upstream+`"]}
groups:
  students:
    deny: [blocked.test]
`, nil)
	code, out, errs := runCLI(t, "ca", "init", "--config", path)
	if code != exitOK || !strings.Contains(out, "Test School web filter CA") {
		t.Fatalf("ca init: %d %q %q", code, out, errs)
	}
	certFile, keyFile := filepath.Join(dir, "ca", "ca.pem"), filepath.Join(dir, "ca", "ca.key")
	for f, want := range map[string]os.FileMode{keyFile: 0o600, filepath.Join(dir, "ca"): 0o700} {
		if st, err := os.Stat(f); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want %04o", f, st.Mode(), err, want)
		}
	}
	pemBytes, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runCLI(t, "ca", "init", "--config", path); code != exitUsage || !strings.Contains(errs, "--force") {
		t.Errorf("second ca init: %d %q", code, errs)
	}
	if now, _ := os.ReadFile(certFile); !bytes.Equal(now, pemBytes) {
		t.Fatal("a refused ca init changed the CA")
	}
	code, out, _ = runCLI(t, "ca", "export", "--config", path)
	if code != exitOK || out != string(pemBytes) {
		t.Errorf("ca export: %d %q", code, out)
	}
	blk, _ := pem.Decode(pemBytes)
	code, out, _ = runCLI(t, "ca", "export", "--der", "--config", path)
	if code != exitOK || out != string(blk.Bytes) {
		t.Errorf("ca export --der: %d, %d bytes", code, len(out))
	}
	ca, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}

	s, _, _ := startServing(t, path)
	base := "http://" + s.admin.String()
	c := from("127.0.0.1", nil)
	if code, body := fetch(t, c, base+"/ca.pem"); code != 200 || body != string(pemBytes) {
		t.Errorf("/ca.pem: %d", code)
	}
	if code, body := fetch(t, c, base+"/ca.crt"); code != 200 || body != string(blk.Bytes) {
		t.Errorf("/ca.crt: %d", code)
	}
	code, body := fetch(t, c, base+"/ca")
	for _, want := range []string{"Trusted Root Certification", "Google Admin", "Intune", tlsinspect.Fingerprint(blk.Bytes), "Test School"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/ca: %d, lacks %q", code, want)
		}
	}

	pool := x509.NewCertPool()
	pool.AddCert(ca)
	tr := &http.Transport{
		Proxy:             http.ProxyURL(&url.URL{Scheme: "http", Host: s.proxyAddr.String()}),
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2: true,
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://blocked.test/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || resp.ProtoMajor != 2 || !strings.Contains(string(page), "blocked.test") {
		t.Errorf("blocked HTTPS site: %d %s\n%s", resp.StatusCode, resp.Proto, page)
	}
	if code, rep := getHealth(t, s); code != 200 || !strings.Contains(strings.Join(rep.Checks, ","), "ca") {
		t.Errorf("health with a fresh CA: %d %+v", code, rep)
	}
}

// TestCAHealth: a CA that expires within 30 days, has expired, or cannot be
// read degrades /healthz.
func TestCAHealth(t *testing.T) {
	upstream := testUpstream(t)
	path, dir := writeConfig(t, `
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy: {listen: "127.0.0.1:0"}
dns: {listen: ["127.0.0.1:0"], upstreams: ["`+upstream+`"]}
`, nil)
	if code, _, errs := runCLI(t, "ca", "init", "--days", "10", "--config", path); code != exitOK {
		t.Fatalf("ca init: %s", errs)
	}
	s, _, _ := startServing(t, path)
	code, rep := getHealth(t, s)
	if code != http.StatusServiceUnavailable || problemKeys(rep) != "proxy/ca" || !strings.Contains(rep.Problems[0].Message, "expires") {
		t.Fatalf("CA expiring in 10 days: %d %+v", code, rep)
	}

	certFile := filepath.Join(dir, "ca", "ca.pem")
	check := tlsinspect.HealthCheck(func() string { return certFile }, nil, func() time.Time { return time.Now().Add(11 * 24 * time.Hour) })
	if p := check(); len(p) != 1 || !strings.Contains(p[0].Message, "expired") {
		t.Errorf("expired CA: %+v", p)
	}
	if err := os.WriteFile(certFile, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if p := check(); len(p) != 1 || !strings.Contains(p[0].Message, "cannot be read") {
		t.Errorf("unreadable CA: %+v", p)
	}
	if err := os.Remove(certFile); err != nil {
		t.Fatal(err)
	}
	if p := check(); len(p) != 0 {
		t.Errorf("no CA is not a problem: %+v", p)
	}
}
