package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
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
    block: []
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

// TestCAHealth: a CA that expires within 30 days is a warning (listed,
// /healthz still 200); one that has expired or cannot be read is a
// problem.
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
	if code != http.StatusOK || rep.Status != "warning" || problemKeys(rep) != "proxy/ca" || !rep.Problems[0].Warning ||
		!strings.Contains(rep.Problems[0].Message, "expires") {
		t.Fatalf("CA expiring in 10 days: %d %+v", code, rep)
	}

	certFile := filepath.Join(dir, "ca", "ca.pem")
	check := tlsinspect.HealthCheck(func() string { return certFile }, nil, func() time.Time { return time.Now().Add(11 * 24 * time.Hour) })
	if p := check(); len(p) != 1 || !strings.Contains(p[0].Message, "expired") || p[0].Warning {
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

// TestBlockPageHTTPSWhereDNSPoints: with block_response: blockpage and the
// school's CA, a browser following the block answer to https:// gets the
// block page over HTTPS (a leaf for the blocked name); a name that is not
// blocked, or no name, gets no certificate.
func TestBlockPageHTTPSWhereDNSPoints(t *testing.T) {
	port := useBlockPageTLSPort(t)

	upstream := testUpstream(t)
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
  students: {networks: [127.0.0.0/8], block: [pornography]}
`, map[string]string{"adult.txt": "porn.example\n"})
	if code, _, errs := runCLI(t, "ca", "init", "--config", path); code != exitOK {
		t.Fatalf("ca init: %s", errs)
	}
	ca, _, err := tlsinspect.LoadCert(filepath.Join(dir, "ca", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	startServing(t, path)

	get := func(name string) (*http.Response, string, error) {
		tr := &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: pool},
			ForceAttemptHTTP2: true,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, "127.0.0.1:"+strconv.Itoa(port))
			},
		}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("GET", "https://"+name+"/some/page", nil)
		req.Header.Set("Accept", browserAccept) // a page load: the block page, not its one-line form
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b), nil
	}
	resp, body, err := get("www.porn.example")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusForbidden || resp.ProtoMajor != 2 || !strings.Contains(body, "Hillside Test School") || !strings.Contains(body, "porn.example") {
		t.Errorf("HTTPS block page: %d %s\n%.400s", resp.StatusCode, resp.Proto, body)
	}
	if _, _, err := get("www.allowed.example"); err == nil {
		t.Error("a name that is not blocked got a certificate")
	}
	// A name blocked by its DNS answer (a CNAME to a blocked name) was sent
	// to the block-page address too: the page, over HTTPS, explains it.
	resp, body, err = get("origin-cdn.example")
	if err != nil {
		t.Fatalf("a name blocked by its CNAME target: %v", err)
	}
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "https://origin-cdn.example/some/page") || !strings.Contains(body, "<strong>pornography</strong>") {
		t.Errorf("CNAME-blocked name: %d\n%s", resp.StatusCode, body)
	}
}
