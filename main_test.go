package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse-filter/gatehouse/policy"
)

// browserAccept is Chromium's Accept for a page load: requests with it get
// the block page (one line of text otherwise).
const browserAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"

var hiddenField = regexp.MustCompile(`<input type="hidden" name="([a-z]+)" value="([^"]*)">`)

// reportFormOf is the "report a mistake" form of a block page as a
// browser sends it, with the note why.
func reportFormOf(t testing.TB, page, why string) url.Values {
	t.Helper()
	f := url.Values{}
	for _, m := range hiddenField.FindAllStringSubmatch(page, -1) {
		f.Set(m[1], html.UnescapeString(m[2]))
	}
	if f.Get("t") == "" || f.Get("ref") == "" {
		t.Fatalf("no report form on the page:\n%s", page)
	}
	f.Set("why", why)
	return f
}

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// writeConfig writes a config (with {{dir}} replaced by a temp dir) and
// returns its path and the dir.
func writeConfig(t testing.TB, body string, files map[string]string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "gatehouse.yaml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(body, "{{dir}}", dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, dir
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

const cliConfig = `
school: {name: Test School}
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy: {listen: "127.0.0.1:0"}
dns: {listen: ["127.0.0.1:0"], upstreams: ["127.0.0.1:9"]}
lists:
  - name: adult
    path: {{dir}}/adult.txt
    category: pornography
  - name: iwf
    path: {{dir}}/iwf.txt
    category: iwf
    format: sha256
groups:
  students:
    networks: [10.1.0.0/16]
    block: [pornography, vpn, doh]
  staff:
    networks: [10.2.0.0/16]
    block: []
`

var cliFiles = map[string]string{
	"adult.txt": "porn.example\n",
	// The second line is invalid; its text must never be shown for a restricted list.
	"iwf.txt": sha("abuse.example") + "\nsecret-entry-text\n",
}

func TestVersionAndUsage(t *testing.T) {
	if code, out, _ := runCLI(t, "version"); code != 0 || !strings.Contains(out, "gatehouse") {
		t.Errorf("version: %d %q", code, out)
	}
	if code, _, errs := runCLI(t, "frobnicate"); code != exitUsage || !strings.Contains(errs, "unknown command") {
		t.Errorf("unknown command: %d %q", code, errs)
	}
}

func TestConfigCheckReportsAllErrors(t *testing.T) {
	path, _ := writeConfig(t, `
school:
  nmae: typo
groups:
  students:
    block: [pornography, porn]
    networks: [10.1.0.0/33]
lists:
  - name: x
    path: /tmp/x.txt
    category: gambling
    refresh: "every day"
`, nil)
	code, _, errs := runCLI(t, "config", "check", path)
	if code != exitUsage {
		t.Fatalf("exit %d, want %d", code, exitUsage)
	}
	for _, want := range []string{"gatehouse.yaml:3:3", "nmae", "gatehouse.yaml:6:26", "porn", "10.1.0.0/33", "every day"} {
		if !strings.Contains(errs, want) {
			t.Errorf("errors lack %q:\n%s", want, errs)
		}
	}
	// serve refuses to start on the same file.
	if code, _, _ := runCLI(t, "serve", "--config", path); code != exitUsage {
		t.Errorf("serve with an invalid config: exit %d", code)
	}
}

func TestCheckJSON(t *testing.T) {
	path, _ := writeConfig(t, cliConfig, cliFiles)
	for _, tt := range []struct {
		args                         []string
		action, category, group, lst string
		bypass                       bool
	}{
		{[]string{"--client", "10.1.2.3", "www.porn.example"}, "block", "pornography", "students", "adult", false},
		{[]string{"--client", "10.2.2.3", "www.porn.example"}, "allow", "", "staff", "", false},
		{[]string{"--client", "10.1.2.3", "https://nordvpn.com/download"}, "block", "vpn", "students", "embedded/vpn", true},
		// DoH by address, with no name to match: the built-in address list.
		{[]string{"--client", "10.1.2.3", "https://1.1.1.1/dns-query"}, "block", "doh", "students", "embedded/doh-ips", true},
		{[]string{"--client", "10.1.2.3", "https://[2001:4860:4860::8888]/dns-query"}, "block", "doh", "students", "embedded/doh-ips", true},
		{[]string{"--client", "10.2.2.3", "abuse.example"}, "block", "iwf", "staff", "restricted", false},
	} {
		code, out, errs := runCLI(t, append([]string{"check", "--config", path, "--json"}, tt.args...)...)
		if code != 0 {
			t.Fatalf("check %v: exit %d: %s", tt.args, code, errs)
		}
		var r map[string]any
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("check %v: %v\n%s", tt.args, err, out)
		}
		if r["action"] != tt.action || r["category"] != tt.category || r["group"] != tt.group || r["list"] != tt.lst || r["bypass"] != tt.bypass {
			t.Errorf("check %v = %s", tt.args, out)
		}
		for _, key := range []string{"action", "category", "severity", "list", "group", "bypass"} {
			if _, ok := r[key]; !ok {
				t.Errorf("check --json lacks %q", key)
			}
		}
		if strings.Contains(out, "abuse.example\"") && r["entry"] != "" {
			t.Errorf("restricted entry shown: %s", out)
		}
	}
	// Text output explains the decision.
	_, out, _ := runCLI(t, "check", "--config", path, "--client", "10.1.2.3", "porn.example")
	for _, want := range []string{"BLOCK", "pornography", "adult", "students"} {
		if !strings.Contains(out, want) {
			t.Errorf("check text lacks %q:\n%s", want, out)
		}
	}
	if code, _, _ := runCLI(t, "check", "--config", path, "--client", "not-an-ip", "x.example"); code != exitUsage {
		t.Errorf("bad --client: exit %d", code)
	}
}

func TestListsStatsHidesRestricted(t *testing.T) {
	path, _ := writeConfig(t, cliConfig, cliFiles)
	code, out, errs := runCLI(t, "lists", "stats", "--config", path)
	if code != 0 {
		t.Fatalf("lists stats: %d %s", code, errs)
	}
	if strings.Contains(out+errs, "secret-entry-text") || strings.Contains(out+errs, "abuse.example") {
		t.Errorf("restricted list content shown:\n%s%s", out, errs)
	}
	if !strings.Contains(out, "restricted") || !strings.Contains(out, "index:") {
		t.Errorf("stats output:\n%s", out)
	}
	code, out, _ = runCLI(t, "lists", "stats", "--json", "--config", path)
	var rep statsReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 {
		t.Fatalf("stats --json: %v %d", err, code)
	}
	found := false
	for _, l := range rep.Lists {
		if l.Name == "iwf" {
			found = true
			if l.Entries != 1 || l.Invalid != 1 || len(l.Samples) != 0 {
				t.Errorf("iwf stats: %+v", l)
			}
		}
	}
	if !found || rep.Domains == 0 {
		t.Errorf("stats json: %+v", rep)
	}
}

func TestListsUpdate(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "casino.example")
		fmt.Fprintln(w, "bets.example")
	}))
	defer srv.Close()
	path, _ := writeConfig(t, `
database: {{dir}}/gatehouse.db
lists:
  - name: gambling-feed
    url: `+srv.URL+`/gambling.txt
    category: gambling
`, nil)
	code, out, errs := runCLI(t, "lists", "update", "--config", path)
	if code != 0 || !strings.Contains(out, "gambling-feed: updated, 2 entries") {
		t.Fatalf("lists update: %d %q %q", code, out, errs)
	}
	code, out, _ = runCLI(t, "lists", "update", "--config", path)
	if code != 0 || !strings.Contains(out, "gambling-feed: not modified") && !strings.Contains(out, "gambling-feed: ") {
		t.Fatalf("second update: %d %q", code, out)
	}
	code, out, _ = runCLI(t, "check", "--config", path, "--json", "www.casino.example")
	if code != 0 || !strings.Contains(out, `"category": "gambling"`) {
		t.Fatalf("check after update: %s", out)
	}
}

// TestServeReload starts the server, then feeds it an invalid and a valid
// config: the invalid one is rejected and the running config kept.
func TestServeReload(t *testing.T) {
	path, _ := writeConfig(t, cliConfig, cliFiles)
	s, _, _ := startServing(t, path)
	resp, err := http.Get("http://" + s.admin.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`gatehouse_blocklist_entries{category="pornography",list="adult"} 1`, "gatehouse_blocklist_index_built_timestamp_seconds",
		// Go's scheduler and GC stops, for IT placing a slow answer.
		"go_sched_latencies_seconds_bucket", "go_sched_pauses_total_gc_seconds_bucket"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	student := netip.MustParseAddr("10.2.0.5") // staff network at first
	decide := func() policy.Decision {
		return s.engine.Load().Decide(policy.Request{Client: student, Host: "porn.example"})
	}
	if d := decide(); d.Action != policy.Allow || d.Group != "staff" {
		t.Fatalf("before reload: %+v", d)
	}
	// Invalid: rejected by the file watcher, running engine kept.
	before := s.engine.Load()
	dir := filepath.Dir(path)
	invalid := strings.ReplaceAll(strings.Replace(cliConfig, "block: []", "block: [nonsense]", 1), "{{dir}}", dir)
	if err := os.WriteFile(path, []byte(invalid), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for testutil.ToFloat64(s.reloads.WithLabelValues("rejected")) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("invalid config change never noticed")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if s.engine.Load() != before || decide().Action != policy.Allow {
		t.Fatal("invalid config replaced the engine")
	}
	// Valid change (staff now block pornography).
	valid := strings.ReplaceAll(strings.Replace(cliConfig, "block: []", "block: [pornography]", 1), "{{dir}}", dir)
	if err := os.WriteFile(path, []byte(valid), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(15 * time.Second)
	for decide().Action != policy.Block {
		if time.Now().After(deadline) {
			t.Fatal("valid config change not applied by the watcher")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// SIGHUP reloads too: it is noticed before the 2 s file poll would be.
	okBefore := testutil.ToFloat64(s.reloads.WithLabelValues("ok"))
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for testutil.ToFloat64(s.reloads.WithLabelValues("ok")) <= okBefore {
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP did not reload the config")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestConfigCheckPrintsWarnings: what loads but deserves attention (here a
// proxy network that reaches the Gatehouse machine itself) is printed by
// config check, not only kept in memory.
func TestConfigCheckPrintsWarnings(t *testing.T) {
	path, _ := writeConfig(t, `
database: {{dir}}/gatehouse.db
proxy:
  http:
    ip_networks: [127.0.0.0/8]
`, nil)
	code, out, errs := runCLI(t, "config", "check", path)
	if code != exitOK || !strings.Contains(out, "valid") {
		t.Fatalf("config check: %d %s %s", code, out, errs)
	}
	if !strings.Contains(errs, "warning: ") || !strings.Contains(errs, ":5:19: proxy.http.ip_networks[0]") || !strings.Contains(errs, "Gatehouse machine itself") {
		t.Errorf("warnings not printed:\n%s", errs)
	}
	// What each group decrypts, and that nothing is without the CA.
	if !strings.Contains(out, "HTTPS decryption (groups.*.decrypt): guests blocks, staff blocks, students search; the school's CA") ||
		!strings.Contains(out, "does not exist yet, so nothing is decrypted") {
		t.Errorf("decryption summary missing:\n%s", out)
	}
}
