package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-filter/gatehouse/tlsinspect"
)

// TestServeTransparent: serve starts the transparent listeners from the
// config; a browser whose traffic the firewall sends there gets the block
// page on port 80 and, trusting the school's CA, over HTTPS on port 443.
func TestServeTransparent(t *testing.T) {
	upstream := testUpstream(t)
	path, dir := writeConfig(t, `
school: {name: Hillside Test School}
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy:
  listen: "127.0.0.1:0"
  transparent: {http_listen: "127.0.0.1:0", https_listen: "127.0.0.1:0"}
clients: {allow: [127.0.0.1/32]}
dns:
  listen: ["127.0.0.1:0"]
  upstreams: ["`+upstream+`"]
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
	s, _, _ := startServing(t, path)
	if s.tpAddrs[0] == nil || s.tpAddrs[1] == nil {
		t.Fatalf("transparent listeners not started: %v", s.tpAddrs)
	}

	c, err := net.DialTimeout("tcp", s.tpAddrs[0].String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /page HTTP/1.1\r\nHost: www.porn.example\r\nAccept: %s\r\n\r\n", browserAccept)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "Hillside Test School") || !strings.Contains(string(b), "http://www.porn.example/page") {
		t.Errorf("port 80: %d\n%.400s", resp.StatusCode, b)
	}

	tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", s.tpAddrs[1].String(), &tls.Config{ServerName: "www.porn.example", RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(tc, "GET /secure HTTP/1.1\r\nHost: www.porn.example\r\nAccept: %s\r\n\r\n", browserAccept)
	resp, err = http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "https://www.porn.example/secure") {
		t.Errorf("port 443: %d\n%.400s", resp.StatusCode, b)
	}
}
