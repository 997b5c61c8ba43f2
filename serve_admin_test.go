package main

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// from is an HTTP client whose connections come from the loopback
// address src.
func from(src string, proxy *url.URL) *http.Client {
	d := &net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	tr := &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}
	if proxy != nil {
		tr.Proxy = http.ProxyURL(proxy)
	}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

func fetch(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The admin listener answers /metrics and /healthz to admin.allow (or
// clients.allow when it is empty), its pupil-facing pages to
// clients.allow, and 403 to anyone else. Through the proxy, neither it nor
// the DNS listener can be reached at all, even with loopback allowed.
func TestAdminListenerACL(t *testing.T) {
	upstream := testUpstream(t)
	path, _ := writeConfig(t, `
database: {{dir}}/gatehouse.db
admin:
  listen: "127.0.0.1:0"
  allow: [127.0.0.3/32]
proxy:
  listen: "127.0.0.1:0"
  http: {ip_networks: [127.0.0.0/8]}
dns:
  listen: ["127.0.0.1:0"]
  upstreams: ["`+upstream+`"]
clients:
  allow: [127.0.0.2/32]
`, nil)
	s, _, _ := startServing(t, path)
	base := "http://" + s.admin.String()
	for _, tc := range []struct {
		src, path string
		want      int
	}{
		{"127.0.0.1", "/metrics", 403},
		{"127.0.0.1", "/healthz", 403},
		{"127.0.0.1", "/proxy.pac", 403},
		{"127.0.0.1", "/", 403},
		{"127.0.0.2", "/metrics", 403},
		{"127.0.0.2", "/healthz", 403},
		{"127.0.0.2", "/proxy.pac", 200},
		{"127.0.0.3", "/metrics", 200},
		{"127.0.0.3", "/healthz", 200},
		{"127.0.0.3", "/proxy.pac", 403},
	} {
		code, body := fetch(t, from(tc.src, nil), base+tc.path)
		if code != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.src, tc.path, code, tc.want)
		}
		if code == 403 && (strings.Contains(body, "gatehouse_") || strings.Contains(body, "PROXY") || strings.Contains(body, "ok")) {
			t.Errorf("%s %s: refused, but the body says %.100q", tc.src, tc.path, body)
		}
	}

	// Without admin.allow, monitoring follows clients.allow (applied per
	// request, so a reload takes effect at once).
	c := *s.engine.Load().Config()
	c.Admin.Allow = nil
	_, dport, _ := net.SplitHostPort(s.dns.Addrs()[0].String())
	_, aport, _ := net.SplitHostPort(s.admin.String())
	c.Proxy.HTTP.Ports = slices.Clone(c.Proxy.HTTP.Ports)
	for _, p := range []string{aport, dport} {
		n, _ := strconv.Atoi(p)
		c.Proxy.HTTP.Ports = append(c.Proxy.HTTP.Ports, n)
	}
	c.Clients.Allow = append(slices.Clone(c.Clients.Allow), netip.MustParsePrefix("127.0.0.1/32"))
	s.reload(&c)
	if code, body := fetch(t, from("127.0.0.2", nil), base+"/metrics"); code != 200 || !strings.Contains(body, "gatehouse_") {
		t.Errorf("metrics to clients.allow without admin.allow: %d", code)
	}
	if code, _ := fetch(t, from("127.0.0.4", nil), base+"/metrics"); code != 403 {
		t.Errorf("metrics to a client outside clients.allow: %d", code)
	}

	// Through the proxy, from an allowed client, with loopback allowed for
	// plain HTTP: Gatehouse's own listeners are still out of reach.
	pu := &url.URL{Scheme: "http", Host: s.proxyAddr.String()}
	for _, u := range []string{base + "/metrics", "http://127.0.0.1:" + dport + "/"} {
		code, body := fetch(t, from("127.0.0.2", pu), u)
		if code != 403 || !strings.Contains(body, "own listener") {
			t.Errorf("%s through the proxy: %d %.120q", u, code, body)
		}
	}
}

// TestAdminListenerBounds: pupils' browsers reach the admin listener (the
// PAC file, the block page) directly, not through the proxy's connection
// caps; one address cannot hold more than its share of connections open,
// and a header is read up to 16 KiB, not net/http's 1 MiB.
func TestAdminListenerBounds(t *testing.T) {
	upstream := testUpstream(t)
	path, _ := writeConfig(t, `
database: {{dir}}/gatehouse.db
admin:
  listen: "127.0.0.1:0"
proxy:
  listen: "127.0.0.1:0"
  limits: {connections: 100, per_client: 20} # the page listeners follow the proxy's limits
dns:
  listen: ["127.0.0.1:0"]
  upstreams: ["`+upstream+`"]
clients:
  allow: [127.0.0.2/32, 127.0.0.5/32]
`, nil)
	s, _, _ := startServing(t, path)
	checkConnBounds(t, s.admin.String(), "/proxy.pac", "127.0.0.2", "127.0.0.5", 20) // proxy.limits.per_client
}

// checkConnBounds checks a listener's bounds (limitPageConns and a 16 KiB
// header): from holds perAddr connections, each answered
// (GET path), its next is closed unanswered, other is still answered, and
// a 64 KiB header gets 431.
func checkConnBounds(t *testing.T, addr, path, from, other string, perAddr int) {
	t.Helper()
	dial := func(src string) net.Conn {
		t.Helper()
		c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}).Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	get := func(c net.Conn) (string, error) {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: gatehouse\r\n\r\n"); err != nil {
			return "", err
		}
		b := make([]byte, 9)
		_, err := io.ReadFull(c, b)
		return string(b), err
	}
	for i := range perAddr {
		if line, err := get(dial(from)); err != nil || line != "HTTP/1.1 " {
			t.Fatalf("connection %d from one address: %q %v", i+1, line, err)
		}
	}
	if line, err := get(dial(from)); err == nil {
		t.Fatalf("connection %d from one address was answered: %q", perAddr+1, line)
	}
	if line, err := get(dial(other)); err != nil || line != "HTTP/1.1 " {
		t.Fatalf("another address while the first holds its share: %q %v", line, err)
	}
	c := dial(other)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	go io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: gatehouse\r\nX-Pad: "+strings.Repeat("a", 64<<10)+"\r\n\r\n")
	b := make([]byte, 12)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "HTTP/1.1 431" {
		t.Fatalf("64 KiB of headers: %q %v", b, err)
	}
}

// TestConsoleListenerBounds: any address can connect to the console
// (console.allow is read per request), so its listener bounds connections
// as the admin listener's does.
func TestConsoleListenerBounds(t *testing.T) {
	upstream := testUpstream(t)
	path, _ := writeConfig(t, `
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy: {listen: "127.0.0.1:0"}
console: {listen: "127.0.0.1:0"}
dns:
  listen: ["127.0.0.1:0"]
  upstreams: ["`+upstream+`"]
`, nil)
	var code int
	var out string
	withStdin("copper kettle violin harbour\n", func() {
		code, out, _ = runCLI(t, "--config", path, "accounts", "add", "dsl@school.example", "--role", "dsl")
	})
	if code != exitOK {
		t.Fatalf("accounts add: %d %q", code, out)
	}
	s, _, _ := startServing(t, path)
	if s.consoleAddr == nil {
		t.Fatal("the console did not start")
	}
	checkConnBounds(t, s.consoleAddr.String(), "/signin", "127.0.0.2", "127.0.0.5", consoleMaxConnsPerAddr)
}
