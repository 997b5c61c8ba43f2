package blocklists

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestListStatus: every configured list has a status: loaded with its
// count and last success; a feed whose refresh fails stays loaded but
// failing; a file that is missing is not loaded, with the reason; and
// Status never waits for a build or download in progress.
func TestListStatus(t *testing.T) {
	dir := t.TempDir()
	local := filepath.Join(dir, "local.txt")
	os.WriteFile(local, []byte("a.example\nb.example\n"), 0o600)
	feed := newFeedServer(t, domains("bet", 10))
	m := NewManager(filepath.Join(dir, "cache"), []Source{
		{Name: "local", Path: local, Category: Gambling},
		feedSource("feed", feed.srv.URL, Gambling),
		{Name: "gone", Path: filepath.Join(dir, "gone.txt"), Category: Gambling},
	}, nil, nil)
	if len(m.Status()) != 0 {
		t.Fatal("status before the first load")
	}
	if _, err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := m.Status()
	if len(st) != 3 || st[0].Name != "local" || st[1].Name != "feed" || st[2].Name != "gone" {
		t.Fatalf("status %+v", st)
	}
	if !st[0].Loaded || st[0].Entries != 2 || st[0].LastSuccess.IsZero() || st[0].Failing() {
		t.Errorf("local: %+v", st[0])
	}
	if !st[1].Loaded || st[1].Entries != 10 || st[1].Failing() {
		t.Errorf("feed: %+v", st[1])
	}
	if st[2].Loaded || !st[2].Failing() || st[2].LastError == "" || !st[2].LastSuccess.IsZero() {
		t.Errorf("missing file: %+v", st[2])
	}

	// The feed goes down: the cached copy stays loaded, the failure is seen.
	feed.set("", "text/plain", true)
	m.Update(context.Background(), []string{"feed"}, nil)
	if f := m.Status()[1]; !f.Loaded || !f.Failing() || f.LastErrorAt.IsZero() {
		t.Errorf("feed down: %+v", f)
	}
	feed.set(domains("bet", 10), "text/plain", false)
	m.Update(context.Background(), []string{"feed"}, nil)
	if f := m.Status()[1]; !f.Loaded || f.Failing() {
		t.Errorf("feed back: %+v", f)
	}

	// A build or download holds the manager's lock; Status does not wait.
	m.mu.Lock()
	done := make(chan []ListStatus)
	go func() { done <- m.Status() }()
	select {
	case st := <-done:
		if len(st) != 3 {
			t.Errorf("status during a build: %+v", st)
		}
	case <-time.After(10 * time.Second):
		t.Error("Status waited for the manager's lock")
	}
	m.mu.Unlock()
}

// TestListStatusSurvivesRestart: a feed whose downloads have been failing
// is still failing after a restart (a new manager on the same cache), with
// its last error, when it last downloaded and how many downloads in a row
// failed, from a status file beside its cached copy (0600); a restricted
// feed's persisted error quotes none of its lines.
func TestListStatusSurvivesRestart(t *testing.T) {
	const secret = "csam-secret-label"
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	feed := newFeedServer(t, domains("bet", 10))
	restricted := newFeedServer(t, domains("ok", 10))
	sources := func() []Source {
		r := feedSource("ctiru", restricted.srv.URL, CTIRU)
		r.Format = FormatDomains
		return []Source{feedSource("feed", feed.srv.URL, Gambling), r}
	}
	m := NewManager(cache, sources(), nil, nil)
	if _, err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	okAt := m.Status()[0].LastSuccess
	feed.set("", "text/plain", true)
	restricted.set(strings.Repeat(secret+"\u200d.example\n", 3), "text/plain", false)
	for range 3 {
		m.Update(context.Background(), nil, nil)
	}
	before := m.Status()
	if !before[0].Failing() || !before[1].Failing() {
		t.Fatalf("not failing before the restart: %+v", before)
	}

	// The restart: a new manager, loading the cached copies.
	m2 := NewManager(cache, sources(), nil, nil)
	m2.NoFetch = true
	if _, err := m2.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	after := m2.Status()
	for i, st := range after {
		if !st.Loaded || !st.Failing() || st.LastError != before[i].LastError || !st.LastErrorAt.Equal(before[i].LastErrorAt) ||
			st.Failures != 3 || before[i].Failures != 3 {
			t.Errorf("after a restart %s shows %+v, was %+v", st.Name, st, before[i])
		}
		if strings.Contains(st.LastError, secret) {
			t.Errorf("%s: a restricted list's line in its status: %s", st.Name, st.LastError)
		}
	}
	if !after[0].LastSuccess.Equal(okAt) {
		t.Errorf("after a restart the last success is %v, was %v", after[0].LastSuccess, okAt)
	}
	for _, name := range []string{"feed", "ctiru"} {
		fi, err := os.Stat(filepath.Join(cache, name+".status.json"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: status file beside the cached copy: %v %v", name, fi, err)
		}
	}
	// A download that works again clears the count, and says so after a restart.
	feed.set(domains("bet", 10), "text/plain", false)
	m2.NoFetch = false
	m2.Update(context.Background(), []string{"feed"}, nil)
	m3 := NewManager(cache, sources(), nil, nil)
	m3.NoFetch = true
	if _, err := m3.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := m3.Status()[0]; st.Failing() || st.Failures != 0 || !st.LastSuccess.After(okAt) {
		t.Errorf("feed back, after a restart: %+v", st)
	}
	entries, _ := os.ReadDir(cache)
	for _, e := range entries {
		data, _ := os.ReadFile(filepath.Join(cache, e.Name()))
		if strings.Contains(string(data), secret) {
			t.Errorf("%s holds a restricted list's line", e.Name())
		}
	}
}
