package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/health"
)

// deadUpstream returns a loopback UDP address nobody listens on: queries
// to it fail at once (port unreachable).
func deadUpstream(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

func getHealth(t *testing.T, s *server) (int, health.Report) {
	t.Helper()
	resp, err := http.Get("http://" + s.admin.String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rep health.Report
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		t.Fatalf("/healthz is not JSON: %v", err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	return resp.StatusCode, rep
}

func problemKeys(rep health.Report) string {
	var keys []string
	for _, p := range rep.Problems {
		keys = append(keys, p.Key)
	}
	return strings.Join(keys, ",")
}

// TestHealthzHealthy: a working Gatehouse answers 200 with JSON naming
// what was checked.
func TestHealthzHealthy(t *testing.T) {
	upstream := testUpstream(t)
	path, _ := writeConfig(t, `
school: {name: Test School}
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy: {listen: "127.0.0.1:0"}
dns: {listen: ["127.0.0.1:0"], upstreams: ["`+upstream+`"]}
lists:
  - {name: adult, path: "{{dir}}/adult.txt", category: pornography}
`, map[string]string{"adult.txt": "porn.example\n"})
	s, _, _ := startServing(t, path)
	code, rep := getHealth(t, s)
	if code != http.StatusOK || rep.Status != "ok" || len(rep.Problems) != 0 {
		t.Fatalf("healthy server: %d %+v", code, rep)
	}
	if got := strings.Join(rep.Checks, ","); got != "lists,dns,events,mail" {
		t.Errorf("checks %q", got)
	}
}

// TestHealthzDegraded: every upstream of a group down and a list that
// never loaded each make /healthz answer 503 with the cause, and the list
// metrics cover every configured list, loaded or not.
func TestHealthzDegraded(t *testing.T) {
	upstream := testUpstream(t)
	dead := deadUpstream(t)
	path, _ := writeConfig(t, `
school: {name: Test School}
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy: {listen: "127.0.0.1:0"}
dns:
  listen: ["127.0.0.1:0"]
  upstreams: ["`+upstream+`"]
  health_check: 0s
  group_upstreams:
    guests: {upstreams: ["`+dead+`"]}
clients:
  allow: [127.0.0.0/8]
lists:
  - {name: adult, path: "{{dir}}/adult.txt", category: pornography}
  - {name: missing, path: "{{dir}}/missing.txt", category: gambling}
groups:
  guests: {networks: [127.0.0.2/32], block: []}
reports:
  health: {notify_after: 2m, remind_every: 12h}
`, map[string]string{"adult.txt": "porn.example\n"})
	s, _, _ := startServing(t, path)
	if n := s.reports.Health; n == nil || n.After != 2*time.Minute || n.Remind != 12*time.Hour {
		t.Fatalf("health notices not wired as configured: %+v", n)
	}
	code, rep := getHealth(t, s)
	if code != http.StatusServiceUnavailable || rep.Status != "degraded" || problemKeys(rep) != "lists/missing" {
		t.Fatalf("missing list: %d %+v", code, rep)
	}
	if !strings.Contains(rep.Problems[0].Message, "missing.txt") {
		t.Errorf("the problem does not say why: %q", rep.Problems[0].Message)
	}

	// Guests' only upstream fails three times: that set is down.
	c := &mdns.Client{Net: "udp", Timeout: 2 * time.Second, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP("127.0.0.2")}}}
	for _, name := range []string{"a.example.", "b.example.", "c.example."} {
		m := new(mdns.Msg)
		m.SetQuestion(name, mdns.TypeA)
		if r, _, err := c.Exchange(m, s.dns.Addrs()[0].String()); err != nil || r.Rcode != mdns.RcodeServerFailure {
			t.Fatalf("query from a guest with its upstream down: %v %v", r, err)
		}
	}
	code, rep = getHealth(t, s)
	if code != http.StatusServiceUnavailable || problemKeys(rep) != "dns/upstreams/group guests,lists/missing" {
		t.Fatalf("upstreams down: %d %+v", code, rep)
	}
	if !strings.Contains(rep.Problems[0].Message, dead) {
		t.Errorf("the problem does not name the upstream: %q", rep.Problems[0].Message)
	}

	resp, err := http.Get("http://" + s.admin.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`gatehouse_blocklist_loaded{list="adult"} 1`, `gatehouse_blocklist_loaded{list="missing"} 0`,
		`gatehouse_blocklist_source_entries{list="adult"} 1`, `gatehouse_blocklist_failed{list="missing"} 1`,
		`gatehouse_blocklist_failed{list="adult"} 0`, `gatehouse_blocklist_last_error_timestamp_seconds{list="adult"} 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, l := range []string{"adult", "missing"} {
		if !strings.Contains(string(body), `gatehouse_blocklist_last_success_timestamp_seconds{list="`+l+`"}`) ||
			!strings.Contains(string(body), `gatehouse_blocklist_last_error_timestamp_seconds{list="`+l+`"}`) {
			t.Errorf("/metrics lacks the timestamps of list %s", l)
		}
	}
	if strings.Contains(string(body), `gatehouse_blocklist_last_success_timestamp_seconds{list="adult"} 0`) {
		t.Error("a loaded list has no last success time")
	}
}

// TestShrunkListKeepsRunningLists: IT's local list emptied (or caught half
// written) when a reload or refresh re-reads it must not unblock its names:
// the rebuild is refused, the running lists keep blocking, and /healthz
// warns, naming the list and why, until a good file is back.
func TestShrunkListKeepsRunningLists(t *testing.T) {
	upstream := testUpstream(t)
	body := `
school: {name: Test School}
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy: {listen: "127.0.0.1:0"}
dns: {listen: ["127.0.0.1:0"], upstreams: ["` + upstream + `"], health_check: 0s}
clients: {allow: [127.0.0.0/8]}
lists:
  - {name: school-deny, path: "{{dir}}/school-deny.txt", category: pornography}
`
	var full strings.Builder
	for i := range 40 {
		fmt.Fprintf(&full, "porn%d.example\n", i)
	}
	path, dir := writeConfig(t, body, map[string]string{"school-deny.txt": full.String()})
	s, _, _ := startServing(t, path)
	dnsAddr := s.dns.Addrs()[0].String()
	blocked := func(when string) {
		t.Helper()
		for _, rr := range askDNS(t, dnsAddr, "porn39.example").Answer {
			if a, ok := rr.(*mdns.A); ok && a.A.String() == "192.0.2.1" {
				t.Fatalf("%s: porn39.example resolved through the upstream", when)
			}
		}
	}
	blocked("started")
	if code, _ := getHealth(t, s); code != http.StatusOK {
		t.Fatalf("healthy start: %d", code)
	}
	list := filepath.Join(dir, "school-deny.txt")
	if err := os.WriteFile(list, nil, 0o600); err != nil { // an editor's or script's truncation
		t.Fatal(err)
	}
	reloadFile(t, s, path, dir, body)
	blocked("after a reload with the file empty")
	// The running copy still blocks: a warning (200), which IT is mailed.
	code, rep := getHealth(t, s)
	if code != http.StatusOK || rep.Status != "warning" || problemKeys(rep) != "lists/school-deny" ||
		!rep.Problems[0].Warning || !strings.Contains(rep.Problems[0].Message, "previously 40") {
		t.Fatalf("health with the list refused: %d %+v", code, rep)
	}
	if err := os.WriteFile(list, []byte(full.String()+"porn40.example\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reloadFile(t, s, path, dir, body)
	if code, rep := getHealth(t, s); code != http.StatusOK || rep.Status != "ok" {
		t.Fatalf("health with the list back: %d %+v", code, rep)
	}
	blocked("the list back")
}

// TestFeedRefreshFailureWarnsWhenStale: a feed whose downloads fail keeps
// filtering with its last copy; /healthz says nothing while that copy is
// fresh (the next refresh retries) and warns once it is a day old, naming
// the list, when the copy is from and the error.
func TestFeedRefreshFailureWarnsWhenStale(t *testing.T) {
	var down atomic.Bool
	feed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "bet1.example\nbet2.example\n")
	}))
	defer feed.Close()
	m := bl.NewManager(t.TempDir(), []bl.Source{{Name: "gambling", Category: bl.Gambling,
		Feed: &bl.Feed{Name: "gambling", URL: feed.URL, Timeout: 5 * time.Second}}}, nil, nil)
	if _, err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p := listProblems(m, time.Now()); len(p) != 0 {
		t.Fatalf("fresh feed: %+v", p)
	}
	down.Store(true)
	if res, _ := m.Update(context.Background(), nil, nil); len(res) != 1 || res[0].Err == nil {
		t.Fatalf("refresh with the feed down: %+v", res)
	}
	if p := listProblems(m, time.Now()); len(p) != 0 {
		t.Fatalf("one failed refresh of a fresh copy: %+v", p)
	}
	p := listProblems(m, time.Now().Add(staleFeedAfter+time.Minute))
	if len(p) != 1 || p[0].Key != "lists/gambling" || !p[0].Warning || !strings.Contains(p[0].Message, "502") {
		t.Fatalf("a day-old copy with failing downloads: %+v", p)
	}
	if m.Index().Lookup("bet2.example") == 0 {
		t.Fatal("the last copy stopped filtering")
	}
}
