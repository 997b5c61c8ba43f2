package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/policy"
)

// startServingLog is startServing with the server's log written to w.
func startServingLog(t testing.TB, path string, w io.Writer) *server {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	level := new(slog.LevelVar)
	level.Set(cfg.Log.SlogLevel())
	s := &server{log: slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})), logLevel: level, cfgPath: path}
	if err := s.start(ctx, cfg); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.stopDNS()
		s.stopProxy()
		s.stopReports()
		cancel()
	})
	return s
}

// reloadFile writes body (with {{dir}} replaced) to path and reloads it the
// way SIGHUP does.
func reloadFile(t testing.TB, s *server, path, dir, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(body, "{{dir}}", dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	s.reload(cfg)
}

// The configs of TestReloadNeverFailsOpen: the same names are blocked in
// each, but lists are reordered, added and removed, so the bits that the
// allow and deny lists get in the index change from one to the next.
const reloadHead = `
school: {name: Test School}
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy: {listen: "127.0.0.1:0"}
dns: {listen: ["127.0.0.1:0"], upstreams: ["{{upstream}}"], rate_limit: {qps: 0}}
`

var reloadConfigs = []string{
	// A: deny list first, allow list second.
	`lists:
  - {name: adult, path: "{{dir}}/adult.txt", category: pornography}
  - {name: deny-a, path: "{{dir}}/deny-a.txt"}
  - {name: allow-x, path: "{{dir}}/allow-x.txt"}
groups:
  students: {networks: [127.0.0.0/8], block: [pornography], deny_lists: [deny-a], allow_lists: [allow-x]}
`,
	// B: the same lists reordered (the deny and allow lists swap bits).
	`lists:
  - {name: allow-x, path: "{{dir}}/allow-x.txt"}
  - {name: deny-a, path: "{{dir}}/deny-a.txt"}
  - {name: adult, path: "{{dir}}/adult.txt", category: pornography}
groups:
  students: {networks: [127.0.0.0/8], block: [pornography], deny_lists: [deny-a], allow_lists: [allow-x]}
`,
	// C: a deny list added in front.
	`lists:
  - {name: deny-b, path: "{{dir}}/deny-b.txt"}
  - {name: allow-x, path: "{{dir}}/allow-x.txt"}
  - {name: deny-a, path: "{{dir}}/deny-a.txt"}
  - {name: adult, path: "{{dir}}/adult.txt", category: pornography}
groups:
  students: {networks: [127.0.0.0/8], block: [pornography], deny_lists: [deny-a, deny-b], allow_lists: [allow-x]}
`,
	// D: the allow list removed.
	`lists:
  - {name: adult, path: "{{dir}}/adult.txt", category: pornography}
  - {name: deny-a, path: "{{dir}}/deny-a.txt"}
groups:
  students: {networks: [127.0.0.0/8], block: [pornography], deny_lists: [deny-a]}
`,
}

var reloadFiles = map[string]string{
	"adult.txt":   "porn.example\norigin-porn.example\n",
	"deny-a.txt":  "bad.example\norigin-bad.example\n",
	"deny-b.txt":  "worse.example\n",
	"allow-x.txt": "fine.example\n",
}

// TestReloadNeverFailsOpen reloads configs that reorder, add and remove
// lists, and refreshes the lists, while decisions run concurrently through
// the engine, the DNS front door and the proxy: a name that every config
// blocks must never be allowed, not even for one request mid-reload.
func TestReloadNeverFailsOpen(t *testing.T) {
	upstream := testUpstream(t)
	head := strings.ReplaceAll(reloadHead, "{{upstream}}", upstream)
	path, dir := writeConfig(t, head+reloadConfigs[0], reloadFiles)
	s := startServingLog(t, path, io.Discard)

	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello from the origin")
	}))
	defer origin.Close()
	_, oport, _ := net.SplitHostPort(origin.Listener.Addr().String())

	client := netip.MustParseAddr("127.0.0.1")
	blocked := []string{"bad.example", "www.bad.example", "porn.example", "origin-bad.example"}
	var (
		stop      atomic.Bool
		wg        sync.WaitGroup
		mu        sync.Mutex
		failures  []string
		decisions atomic.Int64
		dnsAsked  atomic.Int64
		webAsked  atomic.Int64
	)
	perKind := map[string]int{} // failures kept per front door ("engine", "DNS", "proxy")
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		kind, _, _ := strings.Cut(format, " ")
		if perKind[kind]++; perKind[kind] <= 5 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				name := blocked[i%len(blocked)]
				d := s.engine.Load().Decide(policy.Request{Client: client, Host: name})
				decisions.Add(1)
				if d.Action == policy.Allow {
					fail("engine allowed %s (%s)", name, d.Reason)
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // the DNS front door
		defer wg.Done()
		c := &mdns.Client{Net: "udp", Timeout: 2 * time.Second}
		addr := s.dns.Addrs()[0].String()
		for i := 0; !stop.Load(); i++ {
			name := blocked[i%len(blocked)]
			m := new(mdns.Msg)
			m.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
			r, _, err := c.Exchange(m, addr)
			if err != nil {
				continue // a lost datagram on a loaded machine is not a decision
			}
			dnsAsked.Add(1)
			if r.Rcode != mdns.RcodeNameError || len(r.Answer) != 0 {
				fail("DNS answered %s: %s %v", name, mdns.RcodeToString[r.Rcode], r.Answer)
			}
		}
	}()
	wg.Add(1)
	go func() { // the proxy: an allowed origin-* name would reach the origin
		defer wg.Done()
		pu, _ := url.Parse("http://" + s.proxyAddr.String())
		tr := &http.Transport{Proxy: http.ProxyURL(pu)}
		defer tr.CloseIdleConnections()
		hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		for i := 0; !stop.Load(); i++ {
			name := []string{"origin-bad.example", "origin-porn.example"}[i%2]
			resp, err := hc.Get("http://" + name + ":" + oport + "/")
			if err != nil {
				continue // no answer is not an allow (a loaded machine can time out)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			webAsked.Add(1)
			if resp.StatusCode != http.StatusForbidden {
				fail("proxy answered %s with %d", name, resp.StatusCode)
			}
		}
	}()

	// Reloads and list refreshes, also concurrently with each other.
	const rounds = 24
	var rw sync.WaitGroup
	rw.Add(1)
	go func() {
		defer rw.Done()
		for range rounds / 2 {
			if _, err := s.lists.Update(context.Background(), nil, nil); err != nil {
				fail("list refresh: %v", err)
			}
		}
	}()
	for i := 1; i <= rounds; i++ {
		reloadFile(t, s, path, dir, head+reloadConfigs[i%len(reloadConfigs)])
	}
	rw.Wait()
	// Let every front door ask a few times after the last reload too
	// (polled at most 3,000 times).
	d0, n0, w0 := decisions.Load(), dnsAsked.Load(), webAsked.Load()
	for i := 0; i < 3000 && (decisions.Load() < d0+100 || dnsAsked.Load() < n0+3 || webAsked.Load() < w0+3); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	if dnsAsked.Load() == 0 || webAsked.Load() == 0 {
		t.Errorf("a front door never answered: %d DNS, %d proxy", dnsAsked.Load(), webAsked.Load())
	}
	// The server's own config watcher may apply a file the test wrote as
	// well (a busy machine lets it see one before the test's reload): at
	// least every one of the test's reloads applied, none failed.
	if ok := testutil.ToFloat64(s.reloads.WithLabelValues("ok")); ok < rounds {
		t.Errorf("%v reloads applied, want at least %d", ok, rounds)
	}
	if bad := testutil.ToFloat64(s.reloads.WithLabelValues("rejected")); bad != 0 {
		t.Errorf("%v reloads rejected", bad)
	}
	for _, f := range failures {
		t.Error(f)
	}
	if len(failures) > 0 {
		t.Errorf("failures per front door: %v", perKind)
	}
	t.Logf("%d engine decisions, %d DNS answers, %d proxy answers across %d reloads", decisions.Load(), dnsAsked.Load(), webAsked.Load(), rounds)
}

// lockedBuffer is a log destination safe for concurrent writers (the
// server logs from many goroutines) and for reading meanwhile (String).
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestReloadAppliesClientsAllowToDNS: a reload that narrows clients.allow
// refuses a DNS client at once (it used to change only the proxy), a new
// rate limit applies at once, and every change line of the reload log says
// whether it was applied or needs a restart.
func TestReloadAppliesClientsAllowToDNS(t *testing.T) {
	upstream := testUpstream(t)
	body := `
school: {name: Test School}
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy: {listen: "127.0.0.1:0"}
dns: {listen: ["127.0.0.1:0"], upstreams: ["` + upstream + `"], rate_limit: {qps: 0}, cache: {entries: 1000}}
clients: {allow: [127.0.0.0/8]}
lists:
  - {name: adult, path: "{{dir}}/adult.txt", category: pornography}
groups:
  students: {networks: [127.0.0.0/8], block: [pornography]}
`
	path, dir := writeConfig(t, body, map[string]string{"adult.txt": "porn.example\n"})
	var logs lockedBuffer
	s := startServingLog(t, path, &logs)
	addr := s.dns.Addrs()[0].String()
	c := &mdns.Client{Net: "udp", Timeout: 2 * time.Second}
	ask := func(name string) int {
		t.Helper()
		m := new(mdns.Msg)
		m.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
		r, _, err := c.Exchange(m, addr)
		if err != nil {
			t.Fatalf("query %s: %v", name, err)
		}
		return r.Rcode
	}
	if rc := ask("www.bbc.example"); rc != mdns.RcodeSuccess {
		t.Fatalf("before the reload: %s", mdns.RcodeToString[rc])
	}

	// Narrow clients.allow (and change a setting read only at start, and
	// the log level).
	narrowed := strings.Replace(strings.Replace(body, "allow: [127.0.0.0/8]", "allow: [10.0.0.0/8]", 1),
		"entries: 1000", "entries: 2000", 1) + "log: {level: debug}\n"
	reloadFile(t, s, path, dir, narrowed)
	if s.logLevel.Level() != slog.LevelDebug {
		t.Errorf("log level after the reload: %v", s.logLevel.Level())
	}
	if rc := ask("www.bbc.example"); rc != mdns.RcodeRefused {
		t.Errorf("DNS client outside the new clients.allow: %s, want REFUSED", mdns.RcodeToString[rc])
	}
	if rc := ask("porn.example"); rc != mdns.RcodeRefused {
		t.Errorf("DNS client outside the new clients.allow, blocked name: %s, want REFUSED", mdns.RcodeToString[rc])
	}

	// Back in, with a rate limit of 50 queries a second (burst 50): asked
	// back to back, a client is refused well before 2,000 queries.
	limited := strings.Replace(narrowed, "rate_limit: {qps: 0}", "rate_limit: {qps: 50, burst: 50}", 1)
	limited = strings.Replace(limited, "allow: [10.0.0.0/8]", "allow: [127.0.0.0/8]", 1)
	reloadFile(t, s, path, dir, limited)
	if rc := ask("www.bbc.example"); rc != mdns.RcodeSuccess {
		t.Fatalf("back inside clients.allow: %s", mdns.RcodeToString[rc])
	}
	asked := 1
	for ; asked < 2000 && ask("www.bbc.example") != mdns.RcodeRefused; asked++ {
	}
	if asked == 2000 {
		t.Error("2,000 queries under a new limit of 50 a second: none refused")
	}

	out := logs.String()
	for _, want := range []string{
		`change="clients.allow: added 10.0.0.0/8" status=applied`,
		`change="clients.allow: removed 127.0.0.0/8" status=applied`,
		`change="dns.cache.entries: changed" status="needs a restart"`,
		`change="dns.rate_limit.qps: changed" status=applied`,
		`change="dns.rate_limit.burst: changed" status=applied`,
		`change="log.level: changed" status=applied`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("reload log lacks %s", want)
		}
	}
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, `msg="config change"`) {
			continue
		}
		n++
		if !strings.Contains(line, "status=applied") && !strings.Contains(line, `status="needs a restart"`) {
			t.Errorf("change line says neither applied nor needs a restart: %s", line)
		}
	}
	if n < 6 {
		t.Errorf("%d change lines logged, want at least 6:\n%s", n, out)
	}
}
