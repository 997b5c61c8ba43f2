package main

import (
	"encoding/json"
	"strings"
	"testing"
)

const truthConfig = `
school: {name: Test School, timezone: Europe/London}
database: {{dir}}/gatehouse.db
clients: {allow: [10.0.0.0/8]}
reports:
  recipients: {dsl: [dsl@school.example], headteacher: [head@school.example]}
lists:
  - {name: bets, path: "{{dir}}/bets.txt", category: gambling}
  - {name: play, path: "{{dir}}/play.txt", category: games}
groups:
  students:
    networks: [10.1.0.0/16]
    block: [gambling]
    schedules:
      - name: lessons
        block: [games]
        when: [{days: [weekdays], from: "08:45", to: "15:20"}]
  staff:
    networks: [10.2.0.0/16]
    block: [gambling]
`

// TestCheckTellsTheTruth: `gatehouse check` says what the server would do:
// a client outside clients.allow is refused, a staff breach goes to the
// headteacher, a scheduled block names its schedule, and --at takes RFC
// 3339 in the forms RFC 3339 allows as well as local times.
func TestCheckTellsTheTruth(t *testing.T) {
	path, _ := writeConfig(t, truthConfig, map[string]string{"bets.txt": "bet.example\n", "play.txt": "play.example\n"})
	check := func(args ...string) map[string]any {
		t.Helper()
		code, out, errs := runCLI(t, append([]string{"check", "--config", path, "--json"}, args...)...)
		var r map[string]any
		if err := json.Unmarshal([]byte(out), &r); code != 0 || err != nil {
			t.Fatalf("check %v: exit %d, %v\n%s%s", args, code, err, out, errs)
		}
		return r
	}
	text := func(args ...string) string {
		t.Helper()
		code, out, errs := runCLI(t, append([]string{"check", "--config", path}, args...)...)
		if code != 0 {
			t.Fatalf("check %v: exit %d\n%s", args, code, errs)
		}
		return out
	}

	// Outside clients.allow: refused, not filtered.
	if r := check("--client", "192.0.2.7", "bet.example"); r["action"] != "refused" || r["reason"] != "acl" || r["group"] != "" {
		t.Errorf("client outside clients.allow: %v", r)
	}
	if out := text("--client", "192.0.2.7", "bet.example"); !strings.Contains(out, "REFUSED") || !strings.Contains(out, "clients.allow") {
		t.Errorf("refused text:\n%s", out)
	}
	if r := check("--client", "::ffff:10.1.2.3", "bet.example"); r["action"] != "block" {
		t.Errorf("IPv4-mapped address of an allowed client: %v", r)
	}

	// A staff breach goes to the headteacher; a pupil's to the DSL.
	if r := check("--client", "10.2.3.4", "bet.example"); r["route"] != "headteacher" || r["report_to"] != "headteacher" {
		t.Errorf("staff breach: %v", r)
	}
	if out := text("--client", "10.2.3.4", "bet.example"); !strings.Contains(out, "reported to headteacher (a breach by the staff group staff") {
		t.Errorf("staff breach text:\n%s", out)
	}
	if r := check("--client", "10.1.2.3", "bet.example"); r["route"] != "dsl" || r["report_to"] != "dsl" {
		t.Errorf("pupil breach: %v", r)
	}

	// A scheduled block names its schedule; outside it, allowed.
	// Wednesday 2 December 2026, 10:00 in London (GMT).
	for _, at := range []string{"2026-12-02T10:00:00Z", "2026-12-02 10:00:00Z", "2026-12-02t10:00:00z", "2026-12-02T10:00:00.5+00:00",
		"2026-12-02T11:00:00+01:00", "2026-12-02 10:00", "2026-12-02T10:00"} {
		r := check("--client", "10.1.2.3", "--at", at, "play.example")
		s, _ := r["schedules"].([]any)
		if r["action"] != "block" || len(s) != 1 || s[0] != "lessons" {
			t.Errorf("--at %s: %v", at, r)
		}
	}
	if out := text("--client", "10.1.2.3", "--at", "2026-12-02T10:00:00Z", "play.example"); !strings.Contains(out, `schedule "lessons"`) {
		t.Errorf("scheduled block text does not name the schedule:\n%s", out)
	}
	if r := check("--client", "10.1.2.3", "--at", "2026-12-02T18:00:00Z", "play.example"); r["action"] != "allow" {
		t.Errorf("after lessons: %v", r)
	}
	if r := check("--client", "10.1.2.3", "--at", "2026-12-02T10:00:00Z", "bet.example"); r["schedules"] != nil {
		t.Errorf("an always-blocked category credited to a schedule: %v", r)
	}
	if code, _, errs := runCLI(t, "check", "--config", path, "--at", "next tuesday", "bet.example"); code != exitUsage || !strings.Contains(errs, "RFC 3339") {
		t.Errorf("bad --at: %d %s", code, errs)
	}
}

// TestCheckShowsSearchTerm: `gatehouse check` on a search URL shows the
// term the proxy reads, its watchlist score and whether it is reported,
// and the safe-search switch the proxy adds for the client's group.
func TestCheckShowsSearchTerm(t *testing.T) {
	path, _ := writeConfig(t, truthConfig, map[string]string{"bets.txt": "bet.example\n", "play.txt": "play.example\n"})
	code, out, errs := runCLI(t, "check", "--config", path, "--client", "10.1.2.3", "--json", "https://www.bing.com/search?q=how+to+k1ll+mys3lf")
	var full struct{ Search map[string]any }
	if err := json.Unmarshal([]byte(out), &full); code != 0 || err != nil {
		t.Fatalf("exit %d, %v\n%s%s", code, err, out, errs)
	}
	s := full.Search
	if s["engine"] != "Bing" || s["term"] != "how to k1ll mys3lf" || s["theme"] != "self-harm" || s["reported"] != true ||
		s["severity"] != "critical" || s["safe_search"] != "adlt=strict on searches" {
		t.Errorf("search %v", s)
	}
	code, out, _ = runCLI(t, "check", "--config", path, "--client", "10.1.2.3", "https://duckduckgo.com/?q=photosynthesis")
	if code != 0 || !strings.Contains(out, `search term    "photosynthesis"`) || !strings.Contains(out, "no phrase matched") || !strings.Contains(out, "kp=1") {
		t.Errorf("text:\n%s", out)
	}
	code, out, _ = runCLI(t, "check", "--config", path, "--client", "10.1.2.3", "https://bet.example/?q=kill+myself")
	if code != 0 || strings.Contains(out, "search") {
		t.Errorf("not a search engine:\n%s", out)
	}
}

// TestCheckAllowListedSearchHost: `gatehouse check` on a search host the
// group allow-lists says what the resolver and proxy do: rewritten to the
// safe endpoint, naming the allow entry and why it does not turn safe
// search off.
func TestCheckAllowListedSearchHost(t *testing.T) {
	cfg := strings.Replace(truthConfig, "    block: [gambling]\n    schedules:", "    block: [gambling]\n    safe_search: strict\n    allow: [youtube.com]\n    schedules:", 1)
	path, _ := writeConfig(t, cfg, map[string]string{"bets.txt": "bet.example\n", "play.txt": "play.example\n"})
	code, out, errs := runCLI(t, "check", "--config", path, "--client", "10.1.2.3", "--json", "www.youtube.com")
	var r map[string]any
	if err := json.Unmarshal([]byte(out), &r); code != 0 || err != nil {
		t.Fatalf("exit %d, %v\n%s%s", code, err, out, errs)
	}
	if r["action"] != "rewrite" || r["reason"] != "safe-search" || r["rewrite"] != "restrict.youtube.com" || r["list"] != "group/students/allow" || r["entry"] != "youtube.com" {
		t.Errorf("check www.youtube.com = %s", out)
	}
	if code, out, _ := runCLI(t, "check", "--config", path, "--client", "10.1.2.3", "www.youtube.com"); code != 0 || !strings.Contains(out, "lifts blocks, not safe search") {
		t.Errorf("text:\n%s", out)
	}
}
