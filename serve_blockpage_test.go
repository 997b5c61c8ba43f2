package main

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// TestBlockPageWhereDNSPoints: with block_response: blockpage, the address
// a blocked name resolves to serves the block page on the port browsers
// use, and only to clients.allow.
func TestBlockPageWhereDNSPoints(t *testing.T) {
	port := useBlockPagePort(t)

	upstream := testUpstream(t)
	path, _ := writeConfig(t, `
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
	s, _, _ := startServing(t, path)

	m := new(mdns.Msg)
	m.SetQuestion("www.porn.example.", mdns.TypeA)
	r, _, err := (&mdns.Client{Timeout: 2 * time.Second}).Exchange(m, s.dns.Addrs()[0].String())
	if err != nil || len(r.Answer) != 1 {
		t.Fatalf("block answer: %v %v", r, err)
	}
	a, ok := r.Answer[0].(*mdns.A)
	if !ok || a.A.String() != "127.0.0.1" {
		t.Fatalf("block answer %v, want the block page address", r.Answer[0])
	}

	// The browser follows the answer: http://www.porn.example/ on that address.
	get := func(from string, host ...string) (int, string) {
		t.Helper()
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: (&net.Dialer{
			LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext}}
		req, _ := http.NewRequest("GET", "http://"+net.JoinHostPort(a.A.String(), strconv.Itoa(port))+"/some/page", nil)
		req.Host = "www.porn.example"
		req.Header.Set("Accept", browserAccept)
		if len(host) > 0 {
			req.Host = host[0]
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("block page from %s: %v", from, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("127.0.0.1")
	if code != http.StatusForbidden || !strings.Contains(body, "Hillside Test School") || !strings.Contains(body, "porn.example") {
		t.Errorf("block page: %d\n%.400s", code, body)
	}
	// A client outside clients.allow gets nothing from it.
	code, body = get("127.0.0.2")
	if code != http.StatusForbidden || strings.Contains(body, "Hillside") {
		t.Errorf("client outside clients.allow: %d %.200s", code, body)
	}
	// A name blocked by its DNS answer (a CNAME to a blocked name) gets the
	// block page too, not the neutral "this is the web filter" page.
	code, body = get("127.0.0.1", "origin-cdn.example")
	if code != http.StatusForbidden || !strings.Contains(body, "<strong>pornography</strong>") {
		t.Errorf("CNAME-blocked name: %d\n%.400s", code, body)
	}
}
