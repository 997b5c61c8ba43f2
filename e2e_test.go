package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/crypto/bcrypt"

	"github.com/gatehouse-filter/gatehouse/config"
)

// testUpstream is a loopback DNS server answering every A query with
// 192.0.2.1.
func testUpstream(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		if len(r.Question) == 1 && r.Question[0].Qtype == mdns.TypeA {
			name, ip := r.Question[0].Name, "192.0.2.1"
			if strings.HasPrefix(name, "origin") {
				ip = "127.0.0.1" // the test's HTTP origin
			}
			if strings.HasPrefix(name, "origin-cdn.") { // a CNAME to a blocked name
				rr, _ := mdns.NewRR(name + " 300 IN CNAME edge.porn.example.")
				m.Answer = append(m.Answer, rr)
				name = "edge.porn.example."
			}
			rr, _ := mdns.NewRR(name + " 300 IN A " + ip)
			m.Answer = append(m.Answer, rr)
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

// startServing runs `serve` in-process on the config at path; stop (also
// run at cleanup) shuts it down as SIGTERM would, once.
func startServing(t testing.TB, path string) (*server, *config.Config, func()) {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{log: slog.New(slog.NewTextHandler(io.Discard, nil)), cfgPath: path}
	if err := s.start(ctx, cfg); err != nil {
		cancel()
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			s.stopDNS()
			s.stopProxy()
			s.stopReports()
			cancel()
		})
	}
	t.Cleanup(stop)
	return s, cfg, stop
}

// TestEndToEnd follows one breach through every stage: a DNS query from a
// student → policy → answer → event → breach store → immediate alert in
// the outbox → the events, incidents and report commands.
func TestEndToEnd(t *testing.T) {
	upstream := testUpstream(t)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello from the origin")
	}))
	defer origin.Close()
	_, port, _ := net.SplitHostPort(origin.Listener.Addr().String())
	path, dir := writeConfig(t, `
school: {name: Test School}
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy:
  listen: "127.0.0.1:0"
  # The test's origin runs on loopback, which the proxy otherwise refuses.
  http: {ports: [80, `+port+`], ip_networks: [127.0.0.1/32]}
dns:
  listen: ["127.0.0.1:0"]
  upstreams: ["`+upstream+`"]
lists:
  - name: adult
    path: {{dir}}/adult.txt
    category: pornography
groups:
  students:
    networks: [127.0.0.0/8]
    block: [pornography, vpn]
`, map[string]string{"adult.txt": "porn.example\n"})
	s, cfg, stop := startServing(t, path)
	addr := s.dns.Addrs()[0].String()
	c := &mdns.Client{Net: "udp", Timeout: 2 * time.Second}
	ask := func(name string) *mdns.Msg {
		m := new(mdns.Msg)
		m.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
		r, _, err := c.Exchange(m, addr)
		if err != nil {
			t.Fatalf("query %s: %v", name, err)
		}
		return r
	}
	if r := ask("www.bbc.example"); r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("allowed name: %v", r)
	}
	for range 3 {
		if r := ask("www.porn.example"); r.Rcode != mdns.RcodeNameError {
			t.Fatalf("blocked name: %v", r)
		}
	}
	if r := ask("nordvpn.com"); r.Rcode != mdns.RcodeNameError {
		t.Fatalf("bypass name: %v", r)
	}

	// The proxy resolves through the same resolver and applies the same
	// policy: an allowed origin is fetched, a blocked URL gets the block page.
	proxyURL, _ := url.Parse("http://" + s.proxyAddr.String())
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: 5 * time.Second}
	resp, err := hc.Get("http://origin.example:" + port + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hello from the origin" {
		t.Fatalf("allowed GET through the proxy: %d %q", resp.StatusCode, body)
	}
	// Resolved through the DNS front door, whose CNAME-chain check refuses a
	// name that points at a blocked one (a plain upstream lookup would not):
	// the proxy answers with its block page and records the event.
	resp, err = hc.Get("http://origin-cdn.example:" + port + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "Test School") || !strings.Contains(string(body), "origin-cdn.example") {
		t.Fatalf("a name whose CNAME target is blocked, through the proxy: %d %.200s", resp.StatusCode, body)
	}
	resp, err = hc.Get("http://origin.porn.example:" + port + "/video")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "Test School") {
		t.Fatalf("blocked GET through the proxy: %d %.200s", resp.StatusCode, body)
	}

	// High-severity attempts by a student: an immediate alert, written to
	// the .eml outbox because no SMTP server is configured.
	outbox := cfg.ReportsOutbox()
	deadline := time.Now().Add(60 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(outbox, "*.eml"))
		var all string
		for _, f := range files {
			data, _ := os.ReadFile(f)
			all += string(data)
		}
		if strings.Contains(all, "porn.example") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no alert in %s within 60 s (files: %v)", outbox, files)
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()

	code, out, errs := runCLI(t, "events", "--config", path, "--since", "1h", "--csv")
	if code != 0 || !strings.Contains(out, "www.porn.example") || !strings.Contains(out, "nordvpn.com") || strings.Contains(out, "bbc.example") ||
		!strings.Contains(out, "origin.porn.example") || !strings.Contains(out, "origin-cdn.example") {
		t.Fatalf("events --csv: %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = runCLI(t, "incidents", "--config", path, "--since", "1h", "--json")
	if code != 0 || !strings.Contains(out, "pornography") {
		t.Fatalf("incidents --json: %d\n%s\n%s", code, out, errs)
	}
	attempts := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var inc map[string]any
		if json.Unmarshal([]byte(line), &inc) == nil && inc["category"] == "pornography" {
			if n, ok := inc["count"].(float64); ok {
				attempts += int(n)
			}
		}
	}
	if attempts != 5 { // three DNS queries and two proxy requests (one through a CNAME)
		t.Errorf("pornography incident counts %d attempts, want 5:\n%s", attempts, out)
	}
	html := filepath.Join(dir, "digest.html")
	code, out, errs = runCLI(t, "report", "preview", "--config", path, "--schedule", "daily", "--out", html)
	if code != 0 || !strings.Contains(out, "porn.example") {
		t.Fatalf("report preview: %d\n%s\n%s", code, out, errs)
	}
	if data, err := os.ReadFile(html); err != nil || !strings.Contains(string(data), "<html") {
		t.Fatalf("preview HTML: %v", err)
	}
}

// TestProxyLoginNamesDNSUser: after a user logs in to the proxy from an
// address, that address's DNS queries are decided by the user's group and
// their breach events name the user.
func TestProxyLoginNamesDNSUser(t *testing.T) {
	upstream := testUpstream(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret-pass"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	defer origin.Close()
	_, port, _ := net.SplitHostPort(origin.Listener.Addr().String())
	path, _ := writeConfig(t, `
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy:
  listen: "127.0.0.1:0"
  auth: {users_file: "{{dir}}/users"}
  http: {ports: [`+port+`], ip_networks: [127.0.0.1/32]}
dns:
  listen: ["127.0.0.1:0"]
  upstreams: ["`+upstream+`"]
lists:
  - {name: adult, path: "{{dir}}/adult.txt", category: pornography}
  - {name: bet, path: "{{dir}}/bet.txt", category: gambling}
clients:
  users:
    - {name: mrsmith, group: staff}
groups:
  students:
    networks: [127.0.0.0/8]
    block: [pornography, gambling]
  staff:
    block: [pornography]
`, map[string]string{"adult.txt": "porn.example\n", "bet.txt": "bet.example\n", "users": "mrsmith:" + string(hash) + "\n"})
	s, _, stop := startServing(t, path)
	addr := s.dns.Addrs()[0].String()
	ask := func(name string) int {
		m := new(mdns.Msg)
		m.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
		r, _, err := (&mdns.Client{Timeout: 2 * time.Second}).Exchange(m, addr)
		if err != nil {
			t.Fatalf("query %s: %v", name, err)
		}
		return r.Rcode
	}
	if rc := ask("bet.example"); rc != mdns.RcodeNameError {
		t.Fatalf("before the login, the student network's policy applies: rcode %d", rc)
	}

	proxyURL, _ := url.Parse("http://mrsmith:s3cret-pass@" + s.proxyAddr.String())
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: 5 * time.Second}
	resp, err := hc.Get("http://origin.example:" + port + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("logged-in GET: %d", resp.StatusCode)
	}

	if rc := ask("bet.example"); rc != mdns.RcodeSuccess {
		t.Fatalf("after the login, staff policy should allow gambling: rcode %d", rc)
	}
	if rc := ask("www.porn.example"); rc != mdns.RcodeNameError {
		t.Fatalf("staff still blocked from pornography: rcode %d", rc)
	}
	stop()
	code, out, errs := runCLI(t, "events", "--config", path, "--since", "1h", "--json")
	if code != 0 {
		t.Fatalf("events: %d %s", code, errs)
	}
	var sawStudent, sawStaff bool
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil || ev["source"] != "dns" {
			continue
		}
		switch ev["name"] {
		case "bet.example":
			sawStudent = ev["group"] == "students" && (ev["user"] == nil || ev["user"] == "")
		case "www.porn.example":
			sawStaff = ev["group"] == "staff" && ev["user"] == "mrsmith"
		}
	}
	if !sawStudent || !sawStaff {
		t.Fatalf("DNS events do not carry the proxy login:\n%s", out)
	}
}
