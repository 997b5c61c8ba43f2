package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
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

// oddHelloConn rewrites the records of a real crypto/tls client's first
// flight (its ClientHello) in ways TLS servers accept: a warning alert
// record before it, another minor record-layer version, or the hello split
// in two records with a warning alert between them.
type oddHelloConn struct {
	net.Conn
	how  string
	done bool
}

func (c *oddHelloConn) Write(b []byte) (int, error) {
	if c.done || len(b) < 5 || b[0] != 0x16 {
		return c.Conn.Write(b)
	}
	c.done = true
	out := append([]byte(nil), b...)
	alert := []byte{0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x5a} // warning, user_canceled
	switch c.how {
	case "alert first":
		out = append(append([]byte(nil), alert...), out...)
	case "record version 3.5":
		out[2] = 0x05
	case "alert between records":
		n := int(out[3])<<8 | int(out[4])
		body, half := out[5:5+n], n/2
		var r []byte
		r = append(r, 0x16, out[1], out[2], byte(half>>8), byte(half))
		r = append(r, body[:half]...)
		r = append(r, alert...)
		r = append(r, 0x16, out[1], out[2], byte((n-half)>>8), byte(n-half))
		r = append(r, body[half:]...)
		out = append(r, out[5+n:]...)
	}
	if _, err := c.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}

// TestServeTransparentOddHelloRecords: a ClientHello for a blocked site
// sent to the transparent HTTPS listener with its records dressed as TLS
// servers accept them (a warning alert before or between them, record
// version 3.5) is decided on its name as a plain one is: the browser gets
// the block page over HTTPS, and the breach store the block, not a
// "not TLS" connection.
func TestServeTransparentOddHelloRecords(t *testing.T) {
	upstream := testUpstream(t)
	path, dir := writeConfig(t, `
school: {name: Hillside Test School}
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy:
  listen: "127.0.0.1:0"
  transparent: {https_listen: "127.0.0.1:0"}
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
	s, _, stop := startServing(t, path)
	for _, how := range []string{"alert first", "record version 3.5", "alert between records"} {
		t.Run(how, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", s.tpAddrs[1].String(), 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			tc := tls.Client(&oddHelloConn{Conn: c, how: how}, &tls.Config{ServerName: "www.porn.example", RootCAs: pool})
			if err := tc.Handshake(); err != nil {
				t.Fatalf("handshake (no block page): %v", err)
			}
			fmt.Fprintf(tc, "GET /odd HTTP/1.1\r\nHost: www.porn.example\r\nAccept: %s\r\n\r\n", browserAccept)
			resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "https://www.porn.example/odd") {
				t.Errorf("%d\n%.400s", resp.StatusCode, b)
			}
		})
	}
	stop()
	code, out, errs := runCLI(t, "events", "--config", path, "--since", "1h", "--json")
	if code != 0 {
		t.Fatalf("events: %d %s", code, errs)
	}
	blocked := false
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			continue
		}
		if ev["reason"] == "not-tls" {
			t.Errorf("a dressed hello recorded as not TLS: %s", line)
		}
		if ev["action"] == "block" && strings.HasPrefix(fmt.Sprint(ev["name"]), "www.porn.example") && ev["category"] == "pornography" {
			blocked = true
		}
	}
	if !blocked {
		t.Errorf("no block of www.porn.example in the breach store:\n%s", out)
	}
}
