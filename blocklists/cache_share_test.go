package blocklists

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// lockedBuffer is a log sink several goroutines write to.
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

// TestManagerConcurrentUpdatersShareCache: `gatehouse lists update` and a
// running serve share the list cache directory, each with its own
// manager. Their downloads of one feed take turns (the second sends the
// first's validators and gets 304, instead of a second download whose
// renames and sidecar writes interleave with the first's), and their list
// state saves never collide, so state.json, which holds the counts the
// min_ratio guard compares with, always parses.
func TestManagerConcurrentUpdatersShareCache(t *testing.T) {
	t.Run("feed", func(t *testing.T) {
		body := domains("bet", 200)
		started, release := make(chan struct{}, 4), make(chan struct{})
		var requests, inFlight, overlap atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if inFlight.Add(1) > 1 {
				overlap.Add(1)
			}
			defer inFlight.Add(-1)
			n := requests.Add(1)
			if r.Header.Get("If-None-Match") == `"v1"` {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("ETag", `"v1"`)
			half := len(body) / 2
			fmt.Fprint(w, body[:half])
			w.(http.Flusher).Flush()
			started <- struct{}{}
			if n == 1 {
				<-release // the first download is slow
			}
			fmt.Fprint(w, body[half:])
		}))
		defer srv.Close()
		dir := t.TempDir()
		src := feedSource("gambling", srv.URL+"/list.txt", Gambling)
		src.Feed.Timeout = 30 * time.Second
		serve := NewManager(dir, []Source{src}, nil, nil)
		update := NewManager(dir, []Source{src}, nil, nil)

		// Each updater's outcome on its own channel: which finishes first
		// is not fixed (serve goes on to build after its download, while
		// the updater that waited may already be done).
		type outcome struct {
			r   []UpdateResult
			err error
		}
		serveDone, updateDone := make(chan outcome, 1), make(chan outcome, 1)
		run := func(m *Manager, done chan<- outcome) {
			r, err := m.Update(context.Background(), nil, nil)
			done <- outcome{r, err}
		}
		go run(serve, serveDone)
		<-started // serve's download is under way
		go run(update, updateDone)
		select {
		case <-started: // a second download while the first is running
		case <-time.After(500 * time.Millisecond):
		}
		close(release)
		var got [2]outcome
		got[0], got[1] = <-serveDone, <-updateDone
		for _, o := range got {
			if o.err != nil {
				t.Errorf("update: %v", o.err)
			}
		}
		if overlap.Load() != 0 {
			t.Errorf("the two updaters downloaded the feed at the same time (%d requests)", requests.Load())
		}
		second := got[1].r[0]
		if !second.NotModified || second.Err != nil {
			t.Errorf("the updater that waited did not send the first one's validators: %+v", second)
		}
		// The cached copy and its sidecar belong together.
		p, meta, ok := serve.Fetcher().Cached("gambling")
		if !ok || meta.ETag != `"v1"` {
			t.Fatalf("cached copy %v %+v", ok, meta)
		}
		if data, err := os.ReadFile(p); err != nil || string(data) != body {
			t.Errorf("cached copy is not the feed's body (%v)", err)
		}
		if ix, err := NewManager(dir, []Source{src}, nil, nil).rebuildCached(); err != nil || !ix.Lookup("bet199.example").Has(Gambling) {
			t.Errorf("cached copy does not load whole: %v", err)
		}
	})

	t.Run("state", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "adult.txt")
		if err := os.WriteFile(path, []byte(domains("porn", 50)), 0o600); err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-time.Hour) // long written: no wait for it to settle
		if err := os.Chtimes(path, old, old); err != nil {
			t.Fatal(err)
		}
		var logs lockedBuffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		cache := filepath.Join(dir, "cache")
		var wg sync.WaitGroup
		for i := range 2 {
			m := NewManager(cache, []Source{{Name: fmt.Sprintf("adult%d", i), Path: path, Category: Pornography}}, nil, log)
			if _, err := m.Load(context.Background()); err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 150 {
					if _, err := m.Rebuild(); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		stop := make(chan struct{})
		var torn atomic.Int64
		readerDone := make(chan struct{})
		go func() {
			defer close(readerDone)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if data, err := os.ReadFile(filepath.Join(cache, "state.json")); err == nil {
					var st map[string]listState
					if json.Unmarshal(data, &st) != nil {
						torn.Add(1)
					}
				}
			}
		}()
		wg.Wait()
		close(stop)
		<-readerDone
		if torn.Load() > 0 {
			t.Errorf("state.json read torn %d times", torn.Load())
		}
		if s := logs.String(); strings.Contains(s, "cannot save list state") {
			t.Errorf("a list state save failed:\n%s", grepLines(s, "cannot save"))
		}
		entries, _ := os.ReadDir(cache)
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".tmp") {
				t.Errorf("temporary file left behind: %s", e.Name())
			}
		}
	})
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && len(out) < 5 {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// rebuildCached loads what is in the cache, downloading nothing.
func (m *Manager) rebuildCached() (*Index, error) {
	m.NoFetch = true
	return m.Load(context.Background())
}
