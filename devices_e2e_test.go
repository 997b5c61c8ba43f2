package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// wildcardPEM writes a self-signed certificate for host and *.host to dir
// (cert.pem, key.pem) and returns a pool trusting it.
func wildcardPEM(t *testing.T, dir, host string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{host, "*." + host},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return pool
}

// TestDevicesEndToEnd: `gatehouse devices add` prints the device's DoH URL
// and DoT name; a running serve filters DoH and DoT queries with that
// token as the device's group, and the stored events name the device;
// `devices revoke` is refused by the running serve within dns.remote.reload;
// the token is in no log line and not in the database.
func TestDevicesEndToEnd(t *testing.T) {
	upstream := testUpstream(t)
	dir := t.TempDir()
	pool := wildcardPEM(t, dir, "filter.test")
	path, _ := writeConfig(t, `
school: {name: Test School}
database: {{dir}}/gatehouse.db
log: {level: debug}
admin: {listen: "127.0.0.1:0"}
proxy: {listen: "127.0.0.1:0"}
dns:
  listen: ["127.0.0.1:0"]
  upstreams: ["`+upstream+`"]
  remote:
    host: filter.test
    doh_listen: ["127.0.0.1:0"]
    dot_listen: ["127.0.0.1:0"]
    cert: `+dir+`/cert.pem
    key: `+dir+`/key.pem
    reload: 100ms
lists:
  - {name: adult, path: "{{dir}}/adult.txt", category: pornography}
  - {name: bet, path: "{{dir}}/bet.txt", category: gambling}
groups:
  students:
    block: [pornography, gambling]
  staff:
    networks: [127.0.0.0/8]
    block: [pornography]
clients:
  default_group: staff
`, map[string]string{"adult.txt": "porn.example\n", "bet.txt": "bet.example\n"})

	if code, _, errs := runCLI(t, "devices", "add", "Laptop-12", "--group", "pupils", "--config", path); code != exitUsage || !strings.Contains(errs, `no group named "pupils"`) {
		t.Fatalf("add with an unknown group: %d %s", code, errs)
	}
	code, out, errs := runCLI(t, "devices", "add", "Laptop-12", "--group", "students", "--config", path)
	if code != 0 {
		t.Fatalf("devices add: %d %s", code, errs)
	}
	m := regexp.MustCompile(`DoH URL:  https://filter\.test:0/dns-query/([a-z2-7]{32})\n`).FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "DoT name: "+m[1]+".filter.test (port 0)\n") {
		t.Fatalf("devices add output:\n%s", out)
	}
	token := m[1]
	if code, _, _ := runCLI(t, "devices", "add", "Laptop-12", "--group", "students", "--config", path); code != exitUsage {
		t.Fatalf("second add of the same name: %d", code)
	}

	logs := new(lockedBuffer)
	s := startServingLog(t, path, logs)
	addrs := s.dns.Addrs()
	dot, doh := addrs[2].String(), addrs[3].String()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{ForceAttemptHTTP2: true,
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "filter.test"}}}
	defer hc.CloseIdleConnections()
	post := func(name string) (int, int) {
		q := new(mdns.Msg)
		q.SetQuestion(name, mdns.TypeA)
		q.Id = 0
		b, _ := q.Pack()
		req, _ := http.NewRequest(http.MethodPost, "https://"+doh+"/dns-query/"+token, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/dns-message")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body bytes.Buffer
		_, _ = body.ReadFrom(resp.Body)
		if resp.StatusCode != 200 {
			return resp.StatusCode, -1
		}
		a := new(mdns.Msg)
		if err := a.Unpack(body.Bytes()); err != nil {
			t.Fatal(err)
		}
		return 200, a.Rcode
	}
	// 127.0.0.1 is staff's network; the token makes it students.
	if code, rc := post("bet.example."); code != 200 || rc != mdns.RcodeNameError {
		t.Fatalf("DoH bet.example: %d %d", code, rc)
	}
	if code, rc := post("ok.example."); code != 200 || rc != mdns.RcodeSuccess {
		t.Fatalf("DoH ok.example: %d %d", code, rc)
	}
	c := &mdns.Client{Net: "tcp-tls", Timeout: 10 * time.Second, TLSConfig: &tls.Config{RootCAs: pool, ServerName: token + ".filter.test"}}
	q := new(mdns.Msg)
	q.SetQuestion("porn.example.", mdns.TypeA)
	if r, _, err := c.Exchange(q, dot); err != nil || r.Rcode != mdns.RcodeNameError {
		t.Fatalf("DoT porn.example: %v %v", r, err)
	}

	code, out, _ = runCLI(t, "devices", "list", "--config", path)
	if code != 0 || !strings.Contains(out, "Laptop-12") || !strings.Contains(out, "students") || strings.Contains(out, token) {
		t.Fatalf("devices list: %d\n%s", code, out)
	}
	if code, out, errs := runCLI(t, "devices", "revoke", "Laptop-12", "--config", path); code != 0 || !strings.Contains(out, "within 100ms") {
		t.Fatalf("devices revoke: %d %s %s", code, out, errs)
	}
	refused := false
	for range 400 { // the reload is every 100 ms: bounded by tries, not time
		if code, _ := post("ok.example."); code == http.StatusForbidden {
			refused = true
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if !refused {
		t.Fatal("the revoked token is still served")
	}
	if _, _, err := c.Exchange(q, dot); err == nil {
		t.Fatal("DoT handshake with the revoked token succeeded")
	}
	s.stopDNS()
	s.stopReports()

	code, out, errs = runCLI(t, "events", "--config", path, "--since", "1h", "--json")
	if code != 0 {
		t.Fatalf("events: %d %s", code, errs)
	}
	protos := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		if ev["device"] != "Laptop-12" || ev["group"] != "students" || ev["id_source"] != "device token" {
			t.Errorf("event does not name the device: %s", line)
		}
		protos[ev["protocol"].(string)] = true
	}
	if !protos["doh"] || !protos["dot"] {
		t.Errorf("events by protocol %v, want doh and dot:\n%s", protos, out)
	}
	if l := logs.String(); strings.Contains(l, token) || !strings.Contains(l, "off-site devices enrolled") {
		t.Errorf("the token is in the log (or the log is not captured):\n%s", l)
	}
	for _, f := range []string{"gatehouse.db", "gatehouse.db-wal"} {
		b, _ := os.ReadFile(filepath.Join(filepath.Dir(path), f))
		if bytes.Contains(b, []byte(token)) {
			t.Errorf("the token is in %s", f)
		}
	}
}
