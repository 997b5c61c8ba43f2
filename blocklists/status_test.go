package blocklists

import (
	"context"
	"os"
	"path/filepath"
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
