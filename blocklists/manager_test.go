package blocklists

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
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

	"github.com/gatehouse-filter/gatehouse/bench/benchdata"
)

// feedServer serves a list body that tests can change, counting requests.
type feedServer struct {
	mu       sync.Mutex
	body     string
	ctype    string
	down     bool
	requests atomic.Int64
	srv      *httptest.Server
}

func newFeedServer(t *testing.T, body string) *feedServer {
	f := &feedServer{body: body, ctype: "text/plain"}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.down {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", f.ctype)
		fmt.Fprint(w, f.body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *feedServer) set(body, ctype string, down bool) {
	f.mu.Lock()
	f.body, f.ctype, f.down = body, ctype, down
	f.mu.Unlock()
}

func domains(prefix string, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%s%d.example\n", prefix, i)
	}
	return b.String()
}

func feedSource(name, url string, cat Category) Source {
	return Source{Name: name, Feed: &Feed{Name: name, URL: url, Timeout: 5 * time.Second}, Category: cat}
}

func TestManagerFeedRefresh(t *testing.T) {
	feed := newFeedServer(t, domains("bet", 100))
	dir := t.TempDir()
	m := NewManager(dir, []Source{feedSource("gambling", feed.srv.URL+"/list.txt", Gambling)}, nil, nil)
	ix, err := m.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if ix.Lookup("bet7.example") != SetOf(Gambling) {
		t.Fatal("downloaded list not loaded")
	}

	// Growing is fine.
	feed.set(domains("bet", 150), "text/plain", false)
	res, err := m.Update(context.Background(), nil, nil)
	if err != nil || len(res) != 1 || res[0].Err != nil || !res[0].Changed || res[0].Entries != 150 || res[0].Previous != 100 {
		t.Fatalf("update: %+v %v", res, err)
	}
	if m.Index().Lookup("bet149.example") == 0 {
		t.Fatal("refreshed entries not swapped in")
	}

	// A refresh to under half the entries is refused; the old index stays.
	feed.set(domains("bet", 60), "text/plain", false)
	res, _ = m.Update(context.Background(), nil, nil)
	if res[0].Err == nil || !strings.Contains(res[0].Err.Error(), "refused") {
		t.Fatalf("shrinking refresh accepted: %+v", res[0])
	}
	if m.Index().Lookup("bet149.example") == 0 {
		t.Fatal("old entries lost after a refused refresh")
	}

	// An HTML error page is refused too.
	feed.set("<!DOCTYPE html><html><body>Service unavailable</body></html>", "text/html", false)
	res, _ = m.Update(context.Background(), nil, nil)
	if res[0].Err == nil || m.Index().Lookup("bet149.example") == 0 {
		t.Fatalf("HTML page accepted or old entries lost: %+v", res[0])
	}

	// Start-up with the feed down uses the cached copy.
	feed.set("", "", true)
	m2 := NewManager(dir, []Source{feedSource("gambling", feed.srv.URL+"/list.txt", Gambling)}, nil, nil)
	ix2, err := m2.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if ix2.Lookup("bet149.example") != SetOf(Gambling) {
		t.Fatal("cached copy not loaded at start-up while the feed is down")
	}
	if res, _ := m2.Update(context.Background(), []string{"gambling"}, nil); res[0].Err == nil {
		t.Fatal("update against a down feed reported success")
	}
	if m2.Index().Lookup("bet149.example") == 0 {
		t.Fatal("failed update dropped the list")
	}
	if res, _ := m2.Update(context.Background(), []string{"nope"}, nil); res[0].Err == nil {
		t.Fatal("update of an unknown list reported success")
	}
}

func TestManagerNeverDownloaded(t *testing.T) {
	feed := newFeedServer(t, "")
	feed.set("", "", true)
	local := filepath.Join(t.TempDir(), "local.txt")
	if err := os.WriteFile(local, []byte("games.example\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := NewManager(t.TempDir(), []Source{
		feedSource("remote", feed.srv.URL, Gambling),
		{Name: "local", Path: local, Category: Games},
	}, nil, nil)
	ix, err := m.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if ix.Lookup("games.example") != SetOf(Games) || ix.Lookup("nordvpn.com") != SetOf(VPN) {
		t.Fatal("local and built-in lists must load when a feed is unreachable")
	}
	for _, l := range ix.Lists() {
		if l.Source == "remote" {
			t.Fatalf("a never-downloaded feed appears in the index: %+v", l)
		}
	}
}

// TestManagerKeepsGoodStateOnBadFile: a local list that turns into garbage
// must not replace the running index.
func TestManagerKeepsGoodStateOnBadFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "adult.txt")
	write := func(data []byte) {
		t.Helper()
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write([]byte(domains("porn", 50)))
	m := NewManager(filepath.Join(dir, "cache"), []Source{{Name: "adult", Path: path, Category: Pornography}}, nil, nil)
	if _, err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(domains("porn", 5000)))
	zw.Close()
	bad := map[string][]byte{
		"html":          []byte("<html><head><title>404</title></head><body>Not found</body></html>\n"),
		"truncated gz":  gz.Bytes()[:gz.Len()/2],
		"invalid lines": []byte("not a domain!\n$$$\n" + strings.Repeat("x", 300) + ".com\n"),
		"binary":        {0x00, 0x01, 0x02, 0xff, 0xfe, 0x00, 0x10},
		"non-UTF-8":     []byte("\xff\xfe\xfd.example\n\xc3\x28.example\n"),
	}
	for name, data := range bad {
		write(data)
		if _, err := m.Rebuild(); err == nil {
			t.Errorf("%s: rebuild accepted a broken list", name)
		}
		if m.Index().Lookup("porn49.example") != SetOf(Pornography) {
			t.Errorf("%s: running index lost its entries", name)
		}
	}
	write([]byte(domains("porn", 60)))
	if _, err := m.Rebuild(); err != nil || m.Index().Lookup("porn59.example") == 0 {
		t.Fatalf("good list after bad ones: %v", err)
	}
}

func TestManagerScheduledRefresh(t *testing.T) {
	feed := newFeedServer(t, domains("a", 10))
	src := feedSource("sched", feed.srv.URL, Games)
	src.Refresh = "@every 1s"
	m := NewManager(t.TempDir(), []Source{src}, nil, nil)
	if _, err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	feed.set(domains("a", 12), "text/plain", false)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := m.Start(ctx)
	defer func() { cancel(); <-stopped }() // no refresh writes to the directory as it is removed
	deadline := time.Now().Add(10 * time.Second)
	for m.Index().Lookup("a11.example") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("scheduled refresh never swapped in the new list")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestManagerSquidGuardUT1(t *testing.T) {
	data, ok := benchdata.SharedData()
	if !ok {
		t.Skip("shared data not present")
	}
	m := NewManager(t.TempDir(), []Source{{Name: "ut1", Path: filepath.Join(data, "ut1", "blacklists"), Format: FormatSquidGuard}}, nil, nil)
	ix, err := m.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]ListInfo{}
	for _, l := range ix.Lists() {
		byName[l.Name] = l
		if l.Err != "" {
			t.Errorf("%s: %s", l.Name, l.Err)
		}
	}
	// Counts from ut1/SOURCE.md.
	for name, want := range map[string]struct {
		cat     Category
		entries int
	}{
		"ut1/gambling": {Gambling, 32247}, "ut1/vpn": {VPN, 6039}, "ut1/doh": {DoH, 3015},
		"ut1/redirector": {WebProxy, 132323}, "ut1/games": {Games, 33741}, "ut1/adult/urls": {Pornography, 1090},
	} {
		l, ok := byName[name]
		if !ok {
			t.Errorf("%s not loaded", name)
			continue
		}
		if l.Category != want.cat || l.Entries != want.entries {
			t.Errorf("%s: category %s entries %d, want %s %d", name, l.Category, l.Entries, want.cat, want.entries)
		}
	}
	if _, ok := byName["ut1/shopping"]; ok {
		t.Error("unmapped UT1 category loaded")
	}
}

// TestManagerFetchInBackground: a slow feed must not hold up the first
// index; it is swapped in when it arrives.
func TestManagerFetchInBackground(t *testing.T) {
	release := make(chan struct{})
	var served atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-time.After(time.Minute): // only if Load waits for it
		}
		served.Store(true)
		fmt.Fprint(w, domains("slow", 20))
	}))
	defer srv.Close()
	defer close(release)
	m := NewManager(t.TempDir(), []Source{feedSource("slow", srv.URL, Gambling)}, nil, nil)
	m.FetchInBackground = true
	ix, err := m.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if served.Load() || ix.Lookup("nordvpn.com") != SetOf(VPN) {
		t.Fatal("Load waited for the slow feed or lost the built-in lists")
	}
	release <- struct{}{}
	deadline := time.Now().Add(10 * time.Second)
	for m.Index().Lookup("slow3.example") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("background download never swapped in")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// listNames is the configured sources behind ix, in order (the embedded
// lists left out).
func listNames(ix *Index) string {
	var names []string
	for _, l := range ix.Lists() {
		if l.Source != "" && !strings.HasPrefix(l.Source, "embedded") {
			names = append(names, l.Name)
		}
	}
	return strings.Join(names, ",")
}

// Every index goes through the publisher; one it refuses is dropped, and
// a source change whose publish fails keeps the previous sources.
func TestManagerPublisher(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"a.txt": "a.example\n", "b.txt": "b.example\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	srcA := Source{Name: "a", Path: filepath.Join(dir, "a.txt"), Category: Gambling}
	srcB := Source{Name: "b", Path: filepath.Join(dir, "b.txt"), Category: Games}
	m := NewManager(filepath.Join(dir, "cache"), []Source{srcA}, nil, nil)
	var published []*Index
	refuse := false
	m.SetPublisher(func(ix *Index) error {
		if refuse {
			return fmt.Errorf("refused")
		}
		published = append(published, ix)
		return nil
	})
	ix, err := m.Load(context.Background())
	if err != nil || len(published) != 1 || published[0] != ix || m.Index() != ix {
		t.Fatalf("Load: %v, %d published", err, len(published))
	}
	if _, err := m.Update(context.Background(), nil, nil); err != nil || len(published) != 2 || m.Index() != published[1] {
		t.Fatalf("Update: %v, %d published", err, len(published))
	}
	refuse = true
	if _, err := m.Rebuild(); err == nil || m.Index() != published[1] {
		t.Fatalf("a refused index replaced the running one: %v", err)
	}
	// SetSources publishes through its own function, not the publisher.
	var own *Index
	if _, err := m.SetSources([]Source{srcA, srcB}, func(ix *Index) error { own = ix; return nil }); err != nil {
		t.Fatal(err)
	}
	if own == nil || m.Index() != own || listNames(own) != "a,b" || len(published) != 2 {
		t.Fatalf("SetSources published %v (%s); publisher called %d times", own, listNames(own), len(published))
	}
	if _, err := m.SetSources([]Source{srcB}, func(*Index) error { return fmt.Errorf("no") }); err == nil {
		t.Fatal("SetSources ignored its publish error")
	}
	if m.Index() != own || len(m.Sources()) != 2 {
		t.Fatalf("a failed SetSources changed the sources (%d) or the index", len(m.Sources()))
	}
}

// A refresh that runs while the sources change never publishes an index
// built for sources that are no longer configured: each publish sees the
// sources of the last SetSources.
func TestManagerRefreshNeverPublishesOldSources(t *testing.T) {
	dir := t.TempDir()
	var sets [3][]Source
	for i, name := range []string{"x", "y", "z"} {
		path := filepath.Join(dir, name+".txt")
		if err := os.WriteFile(path, []byte(name+".example\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		src := Source{Name: name, Path: path, Category: Gambling}
		sets[0] = append(sets[0], src)
		sets[1] = append([]Source{src}, sets[1]...)
		if i != 1 {
			sets[2] = append(sets[2], src)
		}
	}
	m := NewManager(filepath.Join(dir, "cache"), sets[0], nil, nil)
	var want atomic.Pointer[string] // the names the configured sources give
	names := func(ss []Source) *string {
		var n []string
		for _, s := range ss {
			n = append(n, s.Name)
		}
		j := strings.Join(n, ",")
		return &j
	}
	want.Store(names(sets[0]))
	var bad atomic.Int64
	m.SetPublisher(func(ix *Index) error {
		if listNames(ix) != *want.Load() {
			bad.Add(1)
		}
		return nil
	})
	if _, err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 30 {
			if _, err := m.Update(context.Background(), nil, nil); err != nil {
				t.Error(err)
			}
		}
	}()
	for i := range 30 {
		ss := sets[i%3]
		if _, err := m.SetSources(ss, func(ix *Index) error {
			want.Store(names(ss))
			if listNames(ix) != *want.Load() {
				bad.Add(1)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if n := bad.Load(); n > 0 {
		t.Errorf("%d indexes published for sources other than the configured ones", n)
	}
}

// TestManagerRefusesShrunkLocalList: a local list read while it is being
// written (empty, or cut short) or emptied by mistake must not unblock
// what it held: a rebuild or a reload that finds it under min_ratio of its
// last count is refused and the running index stays, for plain and hashed
// (restricted) lists and squidGuard trees alike; min_ratio: 0, another
// file or a modest shrink is accepted.
func TestManagerRefusesShrunkLocalList(t *testing.T) {
	hashes := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "%x\n", sha256.Sum256(fmt.Appendf(nil, "csam%d.example", i)))
		}
		return b.String()
	}
	for _, tc := range []struct {
		name, file string
		src        func(path string) Source
		list       func(n int) string
		probe      string // held by the full list, not by a cut one
		cat        Category
	}{
		{"plain", "adult.txt", func(p string) Source { return Source{Name: "adult", Path: p, Category: Pornography} },
			func(n int) string { return domains("porn", n) }, "porn99.example", Pornography},
		{"hashed restricted", "iwf.txt", func(p string) Source { return Source{Name: "iwf", Path: p, Format: FormatSHA256, Category: IWF} },
			hashes, "csam99.example", IWF},
		{"squidguard", "domains", func(p string) Source {
			return Source{Name: "ut1", Path: filepath.Dir(filepath.Dir(p)), Format: FormatSquidGuard}
		}, func(n int) string { return domains("bet", n) }, "bet99.example", Gambling},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, tc.file)
			if tc.file == "domains" {
				path = filepath.Join(dir, "blacklists", "gambling", "domains")
				if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
					t.Fatal(err)
				}
			}
			write := func(data string) {
				t.Helper()
				if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			write(tc.list(100))
			src := tc.src(path)
			m := NewManager(filepath.Join(dir, "cache"), []Source{src}, nil, nil)
			if _, err := m.Load(context.Background()); err != nil {
				t.Fatal(err)
			}
			held := func(when string) {
				t.Helper()
				if got := m.Index().Lookup(tc.probe); !got.Has(tc.cat) {
					t.Fatalf("%s: %s no longer blocked (%v)", when, tc.probe, got)
				}
			}
			held("loaded")
			for _, cut := range []struct {
				name string
				data string
			}{{"empty", ""}, {"cut short", tc.list(30)}} {
				write(cut.data)
				if _, err := m.Rebuild(); err == nil || !strings.Contains(err.Error(), "previously 100") {
					t.Errorf("%s file: rebuild accepted (%v)", cut.name, err)
				}
				held(cut.name + " file, rebuild")
				if _, err := m.SetSources([]Source{src}, nil); err == nil {
					t.Errorf("%s file: reload accepted", cut.name)
				}
				held(cut.name + " file, reload")
			}
			// 60 of 100 is over the default half.
			write(tc.list(60))
			if _, err := m.Rebuild(); err != nil {
				t.Fatalf("a modest shrink refused: %v", err)
			}
			// The 60 are now the count to keep; min_ratio: 0 accepts any size.
			write(tc.list(5))
			if _, err := m.Rebuild(); err == nil {
				t.Fatal("5 of 60 accepted")
			}
			zero := 0.0
			open := src
			open.MinRatio = &zero
			if _, err := m.SetSources([]Source{open}, nil); err != nil {
				t.Fatalf("min_ratio 0: %v", err)
			}
			if m.Index().Lookup(tc.probe).Has(tc.cat) {
				t.Fatal("min_ratio 0: the smaller list was not loaded")
			}
		})
	}
	t.Run("another file", func(t *testing.T) {
		dir := t.TempDir()
		big, small := filepath.Join(dir, "big.txt"), filepath.Join(dir, "small.txt")
		os.WriteFile(big, []byte(domains("porn", 100)), 0o600)
		os.WriteFile(small, []byte(domains("porn", 3)), 0o600)
		m := NewManager(filepath.Join(dir, "cache"), []Source{{Name: "adult", Path: big, Category: Pornography}}, nil, nil)
		if _, err := m.Load(context.Background()); err != nil {
			t.Fatal(err)
		}
		if _, err := m.SetSources([]Source{{Name: "adult", Path: small, Category: Pornography}}, nil); err != nil {
			t.Fatalf("a list pointed at another file was refused: %v", err)
		}
	})
}

// TestManagerRestrictedListErrorsQuoteNoLine: a restricted (IWF/CTIRU) list
// that does not load is reported by file and line only: no part of its
// lines reaches the log, the list status (/healthz, the IT digest), the
// index's list info (lists stats) or a refresh's result, for a local file
// and a feed alike.
func TestManagerRestrictedListErrorsQuoteNoLine(t *testing.T) {
	const secret = "csam-secret-label"
	// Every line is invalid, and the IDN library's reason quotes the label.
	bad := strings.Repeat(secret+"\u200d.example\n", 3)
	dir := t.TempDir()
	path := filepath.Join(dir, "iwf.txt")
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	feed := newFeedServer(t, domains("ok", 5))
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	local := Source{Name: "iwf", Path: path, Format: FormatDomains, Category: IWF}
	remote := feedSource("ctiru", feed.srv.URL, CTIRU)
	remote.Format = FormatDomains
	m := NewManager(filepath.Join(dir, "cache"), []Source{local, remote}, nil, log)
	if _, err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	feed.set(bad, "text/plain", false)
	results, _ := m.Update(context.Background(), []string{"ctiru"}, nil)
	var said []string
	for _, r := range results {
		if r.Err == nil {
			t.Errorf("%s: an all-invalid download was accepted", r.Name)
			continue
		}
		said = append(said, "update "+r.Name+": "+r.Err.Error())
	}
	for _, st := range m.Status() {
		said = append(said, "status "+st.Name+": "+st.LastError)
	}
	for _, l := range m.Index().Lists() {
		said = append(said, "index "+l.Name+": "+l.Err)
	}
	said = append(said, "log: "+logs.String())
	found := map[string]bool{}
	for _, s := range said {
		if strings.Contains(s, secret) {
			t.Errorf("a restricted list's line was quoted: %s", s)
		}
		if strings.Contains(s, "iwf.txt:1") {
			found["iwf"] = true
		}
		if strings.Contains(s, ":1") && strings.HasPrefix(s, "update ctiru") {
			found["ctiru"] = true
		}
	}
	for _, n := range []string{"iwf", "ctiru"} {
		if !found[n] {
			t.Errorf("%s: no error names the file and line:\n%s", n, strings.Join(said, "\n"))
		}
	}
}

// TestManagerSquidGuardKeepsEachCategory: a squidGuard tree is many lists,
// one a category; a reload or refresh that finds one of them emptied (an
// rsync caught mid-copy) or gone must not drop that category while the
// tree's total stays over min_ratio: the rebuild is refused and the
// running lists keep blocking it.
func TestManagerSquidGuardKeepsEachCategory(t *testing.T) {
	root := filepath.Join(t.TempDir(), "blacklists")
	write := func(rel, data string) {
		t.Helper()
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	full := func() {
		write("adult/domains", domains("porn", 1000))
		write("gambling/domains", domains("bet", 100))
		write("gambling/urls", "casino.example/poker\n")
	}
	full()
	src := Source{Name: "ut1", Path: root, Format: FormatSquidGuard}
	m := NewManager(filepath.Join(t.TempDir(), "cache"), []Source{src}, nil, nil)
	if _, err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	held := func(when string) {
		t.Helper()
		if !m.Index().Lookup("bet7.example").Has(Gambling) {
			t.Fatalf("%s: gambling no longer blocked", when)
		}
		if !m.Index().Lookup("porn7.example").Has(Pornography) {
			t.Fatalf("%s: adult no longer blocked", when)
		}
	}
	held("loaded")
	for _, tc := range []struct {
		name string
		cut  func()
	}{
		{"gambling/domains emptied", func() { write("gambling/domains", "") }},
		{"gambling/domains cut short", func() { write("gambling/domains", domains("bet", 10)) }},
		{"gambling directory gone", func() {
			if err := os.RemoveAll(filepath.Join(root, "gambling")); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		tc.cut()
		if _, err := m.Rebuild(); err == nil {
			t.Errorf("%s: rebuild accepted", tc.name)
		} else if !strings.Contains(err.Error(), "gambling") {
			t.Errorf("%s: the error does not name the category's list: %v", tc.name, err)
		}
		held(tc.name + ", rebuild")
		if _, err := m.SetSources([]Source{src}, nil); err == nil {
			t.Errorf("%s: reload accepted", tc.name)
		}
		held(tc.name + ", reload")
		full()
		if _, err := m.Rebuild(); err != nil {
			t.Fatalf("the full tree again: %v", err)
		}
	}
	// min_ratio: 0 lets IT drop a category on purpose.
	if err := os.RemoveAll(filepath.Join(root, "gambling")); err != nil {
		t.Fatal(err)
	}
	zero := 0.0
	open := src
	open.MinRatio = &zero
	if _, err := m.SetSources([]Source{open}, nil); err != nil {
		t.Fatalf("min_ratio 0: %v", err)
	}
	if m.Index().Lookup("bet7.example").Has(Gambling) {
		t.Fatal("min_ratio 0: the category was not dropped")
	}
}

// TestManagerStopsRefreshesAfterReload: Start's context ends the scheduled
// refreshes, also those a config reload (SetSources) scheduled afresh, and a
// reload after the end does not start them again: no download after
// shutdown, no scheduler goroutine left behind.
func TestManagerStopsRefreshesAfterReload(t *testing.T) {
	feed := newFeedServer(t, domains("a", 10))
	src := feedSource("sched", feed.srv.URL, Games)
	src.Refresh = "@every 1s"
	m := NewManager(t.TempDir(), []Source{src}, nil, nil)
	if _, err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := m.Start(ctx)
	if _, err := m.SetSources([]Source{src}, nil); err != nil { // a reload
		t.Fatal(err)
	}
	cancel()
	<-stopped                                                   // Start's goroutine saw the end
	if _, err := m.SetSources([]Source{src}, nil); err != nil { // a reload after shutdown
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // a refresh already running finishes
	before := feed.requests.Load()
	time.Sleep(2500 * time.Millisecond)
	if n := feed.requests.Load() - before; n != 0 {
		t.Fatalf("%d downloads after the manager's context ended", n)
	}
}

// TestManagerFeedErrorNamesDownloadLine: a refused download's line errors
// name the feed (its URL without secrets) and the line, not the temporary
// file the download was checked in, which is gone by the time IT reads it.
func TestManagerFeedErrorNamesDownloadLine(t *testing.T) {
	feed := newFeedServer(t, domains("ok", 5))
	src := feedSource("games", feed.srv.URL+"/games.txt?token=qs-secret-value", Games)
	src.Format = FormatDomains
	m := NewManager(t.TempDir(), []Source{src}, nil, nil)
	if _, err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	feed.set("# header\nnot a domain!\nalso bad!\n", "text/plain", false)
	results, _ := m.Update(context.Background(), nil, nil)
	if len(results) != 1 || results[0].Err == nil {
		t.Fatalf("results %+v", results)
	}
	msg := results[0].Err.Error()
	if strings.Contains(msg, ".tmp") || strings.Contains(msg, "qs-secret-value") {
		t.Errorf("error names the temporary file or a secret: %s", msg)
	}
	if !strings.Contains(msg, feed.srv.URL+"/games.txt") || !strings.Contains(msg, ":2") {
		t.Errorf("error does not name the feed and line 2: %s", msg)
	}
}

// TestManagerLocalFileCaughtMidWrite: a local list being rewritten in
// place (an editor or cp truncates it, then writes) is not read until it
// has settled. A rebuild that comes while only 60 of its 100 lines are
// written (over min_ratio, so the shrink guard does not see it) waits for
// the writer, so the 40 names after the cut stay blocked; nothing else
// would re-read the file until the next reload or refresh.
func TestManagerLocalFileCaughtMidWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "adult.txt")
	full := domains("porn", 100)
	if err := os.WriteFile(path, []byte(full), 0o600); err != nil {
		t.Fatal(err)
	}
	m := NewManager(filepath.Join(dir, "cache"), []Source{{Name: "adult", Path: path, Category: Pornography}}, nil, nil)
	if _, err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	cut := strings.Index(full, "porn60.example\n")
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.WriteString(full[:cut]); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := m.Rebuild(); done <- err }()
	time.Sleep(50 * time.Millisecond) // the writer is slower than the rebuild
	if _, err := fh.WriteString(full[cut:]); err != nil {
		t.Fatal(err)
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	for _, probe := range []string{"porn0.example", "porn99.example"} {
		if !m.Index().Lookup(probe).Has(Pornography) {
			t.Errorf("%s not blocked after a rebuild that caught its list being written", probe)
		}
	}
	if st := m.Status()[0]; st.Entries != 100 {
		t.Errorf("status %+v, want the 100 entries of the finished file", st)
	}
}

func init() {
	// Reloads in these tests follow their files' writes at once: a
	// shorter settling keeps them quick (TestManagerLocalFileCaughtMidWrite's
	// writer pauses well under it).
	settleAge = 250 * time.Millisecond
}

// TestManagerSettlesChangedFilesOnly: a rebuild waits for a local file to
// settle only when it changed since the running lists were read from it,
// so a reload for another reason (a console change, a feed refresh) right
// after a list was written is not held up by it.
func TestManagerSettlesChangedFilesOnly(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "adult.txt")
	if err := os.WriteFile(path, []byte(domains("porn", 10)), 0o600); err != nil {
		t.Fatal(err)
	}
	m := NewManager(filepath.Join(dir, "cache"), []Source{{Name: "adult", Path: path, Category: Pornography}}, nil, nil)
	if _, err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Rebuild(); err != nil {
		t.Fatal(err)
	}
	if n := m.settles.Load(); n != 0 {
		t.Errorf("%d files waited on with none changed since the load", n)
	}
	if err := os.WriteFile(path, []byte(domains("porn", 11)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Rebuild(); err != nil {
		t.Fatal(err)
	}
	if n := m.settles.Load(); n != 1 {
		t.Errorf("%d files waited on after one changed, want 1", n)
	}
	if !m.Index().Lookup("porn10.example").Has(Pornography) {
		t.Error("the changed file's new entry is not loaded")
	}
}
