package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/watchlist"
)

func TestWatchlistsValidation(t *testing.T) {
	checkErrors(t, `watchlists:
  files:
    - theme: self-harms
      path: x.txt
    - theme: drugs
      path: ""
  themes:
    bullying:
      threshold: -1
    violent:
      threshold: 5
  search_engines:
    - name: Broken
      hosts: [nodot]
      paths: [/s]
      param: q
    - name: Half
      hosts: [half.example]
      paths: [/s]
      param: q
      safe_param: safe
`, []want{
		{"3:14", "watchlists.files[0].theme", `unknown watchlist theme "self-harms"`},
		{"6:13", "watchlists.files[1].path", "must not be empty"},
		{"9:18", "watchlists.themes.bullying.threshold", "between 1 and 10000"},
		{"10:5", "watchlists.themes.violent", `unknown watchlist theme "violent"`},
		{"13:7", "watchlists.search_engines[0]", `host "nodot"`},
		{"21:19", "watchlists.search_engines[1].safe_param", "needs safe_strict"},
	})
}

func TestWatchlistsSettingsAndEngines(t *testing.T) {
	c, err := Parse([]byte(`watchlists:
  starter: false
  themes:
    bullying: {severity: high, threshold: 20}
    drugs: {content_report: 40, content_block: -1}
  search_engines:
    - name: Startpage
      hosts: [startpage.com]
      paths: [/sp/search]
      param: query
`), testFile)
	if err != nil {
		t.Fatal(err)
	}
	s := c.WatchlistSettings()
	if s[watchlist.Bullying] != (watchlist.Settings{Severity: blocklists.SeverityHigh, Threshold: 20, ContentReport: 30, ContentBlock: 60}) {
		t.Errorf("bullying: %+v", s[watchlist.Bullying])
	}
	if d := s[watchlist.Drugs]; d.ContentReport != 40 || d.ContentBlock != 0 {
		t.Errorf("drugs: %+v", d)
	}
	if s[watchlist.SelfHarm].Severity != blocklists.SeverityCritical || s[watchlist.SelfHarm].Threshold != watchlist.DefaultThreshold {
		t.Errorf("self-harm: %+v", s[watchlist.SelfHarm])
	}
	tab, err := watchlist.NewEngines(c.SearchEngineTable())
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := tab.Lookup("www.startpage.com"); !ok || e.Name != "Startpage" {
		t.Error("startpage not in the table")
	}
	if es, err := c.ReadWatchlists(); err != nil || len(es) != 0 {
		t.Errorf("starter: false read %d entries (%v)", len(es), err)
	}
}

// TestWatchlistFileErrors: config check reports a bad watchlist file at
// the config line naming it, with the file's own line.
func TestWatchlistFileErrors(t *testing.T) {
	dir := t.TempDir()
	list := filepath.Join(dir, "local.txt")
	if err := os.WriteFile(list, []byte("# ours\nfine phrase | 10\nno weight\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "gatehouse.yaml")
	src := "database: " + filepath.Join(dir, "g.db") + "\nwatchlists:\n  files:\n    - theme: bullying\n      path: " + list + "\n    - theme: drugs\n      path: " + filepath.Join(dir, "missing.txt") + "\n"
	if err := os.WriteFile(cfgPath, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadChecked(cfgPath)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		cfgPath + ":5:13: watchlists.files[0].path: " + list + `:3: want "phrase | weight"`,
		cfgPath + ":7:13: watchlists.files[1].path: cannot read watchlist file",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	c, err := Load(cfgPath) // serve's load: files are read when the engine is built
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadWatchlists(); err == nil || !strings.Contains(err.Error(), list+":3:") {
		t.Errorf("ReadWatchlists: %v", err)
	}
}

func TestWatchlistSelfHarmWarning(t *testing.T) {
	c, err := Parse([]byte("watchlists:\n  themes:\n    self-harm: {severity: high}\n"), testFile)
	if err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(c.Warnings(), "\n"); !strings.Contains(w, "watchlists.themes.self-harm.severity: suicide-related searches are then high") {
		t.Errorf("warnings: %q", w)
	}
}
