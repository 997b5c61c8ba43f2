package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/watchlist"
)

// TestWatchlistSnapshot: the engine holds its config's compiled
// watchlist; a list refresh (New with the same config) reuses it without
// reading the files again, and a config whose watchlist file is broken is
// refused with the file and line, so a reload keeps the running one.
func TestWatchlistSnapshot(t *testing.T) {
	dir := t.TempDir()
	list := filepath.Join(dir, "local.txt")
	if err := os.WriteFile(list, []byte("# ours\nsad beans | 10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := []byte("database: " + dir + "/g.db\nwatchlists:\n  starter: false\n  files: [{theme: self-harm, path: " + list + "}]\n")
	cfg, err := config.Parse(src, "a.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e1, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := e1.Watchlist().NewScorer().Score("feeling like s4d b3ans today"); !r.Over || r.Best != watchlist.SelfHarm {
		t.Fatalf("local phrase: %+v", r)
	}
	if e1.Watchlist().Len() != 1 {
		t.Errorf("starter: false still has %d entries", e1.Watchlist().Len())
	}
	if err := os.WriteFile(list, []byte("# ours\nsad beans | ten\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e2, err := New(cfg, nil) // a list refresh: same config
	if err != nil || e2.Watchlist() != e1.Watchlist() {
		t.Fatalf("refresh: %v, same watchlist %v", err, err == nil && e2.Watchlist() == e1.Watchlist())
	}
	cfg2, err := config.Parse(src, "a.yaml") // a reload
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg2, nil); err == nil || !strings.Contains(err.Error(), list+":2: weight") {
		t.Fatalf("broken file: %v", err)
	}
	// Emptied (or caught half written, truncated first): refused too, so
	// the running words stay rather than the theme losing them.
	for _, data := range []string{"", "# ours\n\n"} {
		if err := os.WriteFile(list, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := New(cfg2, nil); err == nil || !strings.Contains(err.Error(), list+" has no phrases") {
			t.Fatalf("empty file %q: %v", data, err)
		}
	}
}

func TestGroupSafeSearch(t *testing.T) {
	cfg := config.Default()
	cfg.Groups["students"].SafeSearch = "moderate"
	e, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if e.GroupSafeSearch("students") != SafeSearchModerate || e.GroupSafeSearch("nobody") != SafeSearchOff {
		t.Error("GroupSafeSearch")
	}
}
