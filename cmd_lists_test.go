package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse-filter/gatehouse/config"
)

// TestListsStatsFailures: `lists stats` exits 1 and gives the real reason
// for each list that did not load (a missing file, a feed never
// downloaded, a squidGuard tree that is missing or has no mapped
// category), and 0 when all loaded.
func TestListsStatsFailures(t *testing.T) {
	path, dir := writeConfig(t, `
school: {name: Test School}
database: {{dir}}/gatehouse.db
lists:
  - {name: ok, path: "{{dir}}/ok.txt", category: gambling}
  - {name: gone, path: "{{dir}}/gone.txt", category: gambling}
  - {name: feed, url: "https://feed.invalid/x.txt", category: gambling}
  - {name: notree, path: "{{dir}}/notree", format: squidguard}
  - {name: emptytree, path: "{{dir}}/tree", format: squidguard}
`, map[string]string{"ok.txt": "ok.example\n"})
	os.MkdirAll(filepath.Join(dir, "tree", "not-a-category"), 0o700)
	os.WriteFile(filepath.Join(dir, "tree", "not-a-category", "domains"), []byte("x.example\n"), 0o600)
	code, out, _ := runCLI(t, "lists", "stats", "--config", path)
	if code != exitFailure {
		t.Errorf("exit %d with failed lists, want %d", code, exitFailure)
	}
	for _, want := range []string{
		"gone.txt: no such file or directory",
		"feed  ", "no local copy (run `gatehouse lists update`)",
		"notree: no such file or directory",
		"emptytree               (squidGuard tree)", "no sub-directory with a mapped category",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("lists stats lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "notree  iwf") || strings.Contains(out, "notree: no local copy") {
		t.Errorf("a local tree reported as an iwf feed:\n%s", out)
	}

	ok, _ := writeConfig(t, `
school: {name: Test School}
database: {{dir}}/gatehouse.db
lists:
  - {name: ok, path: "{{dir}}/ok.txt", category: gambling}
`, map[string]string{"ok.txt": "ok.example\n"})
	if code, out, errs := runCLI(t, "lists", "stats", "--config", ok); code != exitOK {
		t.Errorf("all lists loaded: exit %d\n%s%s", code, out, errs)
	}
}

// TestInvalidListLinesLogged: rejected lines are logged at load with
// file:line and the reason (the first few per list, then how many more);
// a restricted list's lines are never shown.
func TestInvalidListLinesLogged(t *testing.T) {
	var bad strings.Builder
	bad.WriteString("good.example\n")
	for i := range 8 {
		bad.WriteString("bad_name_" + string(rune('a'+i)) + "!.example\n")
	}
	path, dir := writeConfig(t, `
school: {name: Test School}
database: {{dir}}/gatehouse.db
lists:
  - {name: mine, path: "{{dir}}/mine.txt", category: gambling, format: domains}
  - {name: iwf, path: "{{dir}}/iwf.txt", category: iwf, format: urls}
`, map[string]string{"mine.txt": bad.String(), "iwf.txt": "secret.example/abuse\nbad host.example/secret-path\n"})
	_, _, errs := runCLI(t, "lists", "stats", "--config", path)
	for _, want := range []string{
		`msg="invalid list line" list=mine at=` + filepath.Join(dir, "mine.txt") + `:2 reason=`,
		filepath.Join(dir, "mine.txt") + `:6`,
		`msg="more invalid list lines not shown" list=mine`, "more=3 invalid=8",
		`msg="invalid list line" list=iwf at=` + filepath.Join(dir, "iwf.txt") + `:2`,
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("log lacks %q:\n%s", want, errs)
		}
	}
	if strings.Contains(errs, filepath.Join(dir, "mine.txt")+":7") || strings.Contains(errs, "secret-path") {
		t.Errorf("logged too much:\n%s", errs)
	}
	if !strings.Contains(errs, `line=bad_name_a!.example`) {
		t.Errorf("the rejected line itself is not shown for an ordinary list:\n%s", errs)
	}
}

// TestFeedFailuresSurviveRestart: a feed whose downloads have been failing
// is still reported failing by a later process on the same cache (a
// restarted serve, `lists stats`): `lists stats` says so with the error
// and how many downloads in a row failed, /healthz warns once the copy is
// a day old, and the metrics give the count, not a healthy list.
func TestFeedFailuresSurviveRestart(t *testing.T) {
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
	path, _ := writeConfig(t, `
school: {name: Test School}
database: {{dir}}/gatehouse.db
lists:
  - {name: gambling, url: "`+feed.URL+`/list.txt", category: gambling}
`, nil)
	if code, out, errs := runCLI(t, "lists", "update", "--config", path); code != exitOK {
		t.Fatalf("first download: exit %d\n%s%s", code, out, errs)
	}
	down.Store(true)
	for range 2 {
		if code, _, _ := runCLI(t, "lists", "update", "--config", path); code != exitFailure {
			t.Fatalf("update with the feed down: exit %d", code)
		}
	}
	code, out, _ := runCLI(t, "lists", "stats", "--config", path)
	if code != exitOK || !strings.Contains(out, "502") || !strings.Contains(out, "2 in a row") {
		t.Errorf("lists stats after failed downloads (exit %d):\n%s", code, out)
	}

	// A restarted serve: a new manager on the same cache.
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := newLists(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.NoFetch = true
	if _, err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	p := listProblems(m, time.Now().Add(staleFeedAfter+time.Minute))
	if len(p) != 1 || !p[0].Warning || !strings.Contains(p[0].Message, "502") || !strings.Contains(p[0].Message, "2 in a row") {
		t.Errorf("/healthz after a restart, a day on: %+v", p)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(&listsCollector{lists: m})
	n, err := testutil.GatherAndCount(reg, "gatehouse_blocklist_failed")
	if err != nil || n != 1 {
		t.Fatalf("metrics: %d %v", n, err)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP gatehouse_blocklist_consecutive_failures Downloads of a feed (loads of a local list) in a row that failed since its last success, kept across restarts for feeds.
# TYPE gatehouse_blocklist_consecutive_failures gauge
gatehouse_blocklist_consecutive_failures{list="gambling"} 2
# HELP gatehouse_blocklist_failed 1 when the last attempt to load or download a configured list failed.
# TYPE gatehouse_blocklist_failed gauge
gatehouse_blocklist_failed{list="gambling"} 1
`), "gatehouse_blocklist_failed", "gatehouse_blocklist_consecutive_failures"); err != nil {
		t.Error(err)
	}
}
