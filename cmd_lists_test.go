package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
