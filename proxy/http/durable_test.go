package httpproxy

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-filter/gatehouse/internal/storetest"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// TestEventsCollapseCountsExact: repeats that arrive after their window
// has ended but before the flush has seen it are all counted, with a plain
// sink and with the breach store (where counts also go while the window
// is open).
func TestEventsCollapseCountsExact(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	ev := reports.Event{Source: "http", Client: netip.MustParseAddr("10.1.0.1"), Name: "adult.test",
		URL: "http://adult.test/", Action: "block", Category: "pornography", Count: 1}

	run := func(s reports.Sink, flushes bool) int {
		l := newEventLog(s, func() time.Duration { return time.Minute }, clock)
		sent := 0
		for round := range 4 {
			for i := range 10 + round {
				l.record(ev)
				sent++
				advance(time.Second)
				if flushes && i%4 == 0 {
					l.flush(false)
				}
			}
			advance(2 * time.Minute) // the window ends; no flush runs
		}
		l.record(ev)
		sent++
		l.flush(true)
		return sent
	}

	s := &sink{}
	sent := run(s, false)
	total := 0
	for _, e := range s.events() {
		total += e.Count
	}
	if total != sent {
		t.Errorf("plain sink: counted %d of %d requests", total, sent)
	}

	st, w := storetest.Open(t)
	sent = run(w, true)
	w.Close() // everything stored
	var stored, rows int
	if err := st.DB().QueryRow(`SELECT SUM(count), count(*) FROM events`).Scan(&stored, &rows); err != nil {
		t.Fatal(err)
	}
	if stored != sent {
		t.Errorf("store: counted %d of %d requests", stored, sent)
	}
	t.Logf("%d requests in %d rows", sent, rows)
}

// TestBlockPageAfterDurable: when the client has the block page (or the
// CONNECT 403), the event is in the database, and a repeat's count gets
// there long before the collapse window ends.
func TestBlockPageAfterDurable(t *testing.T) {
	st, w := storetest.Open(t)
	e := newEnv(t, envOpts{sink: w})
	c := e.client("", "", "")
	stored := func(q string, args ...any) int64 { return storetest.Int(t, st, q, args...) }
	for i := range 30 {
		resp, _ := get(t, c, e.originURL("adult.test", fmt.Sprintf("/p%d", i)))
		ref := resp.Header.Get("X-Gatehouse-Ref")
		if resp.StatusCode != http.StatusForbidden || ref == "" {
			t.Fatalf("status %d ref %q", resp.StatusCode, ref)
		}
		if n := stored(`SELECT count(*) FROM events WHERE ref = ? AND bytes > 0`, ref); n != 1 {
			t.Fatalf("block page %s delivered with %d events stored", ref, n)
		}
		conn := e.dial("")
		target := fmt.Sprintf("c%d.adult.test:443", i)
		fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
		cr, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: "CONNECT"})
		conn.Close()
		if err != nil || cr.StatusCode != http.StatusForbidden {
			t.Fatalf("CONNECT: %v %v", cr, err)
		}
		if n := stored(`SELECT count(*) FROM events WHERE ref = ?`, cr.Header.Get("X-Gatehouse-Ref")); n != 1 {
			t.Fatalf("CONNECT 403 delivered with %d events stored", n)
		}
	}
	for range 12 {
		get(t, c, e.originURL("adult.test", "/again"))
	}
	deadline := time.Now().Add(20 * time.Second)
	for stored(`SELECT COALESCE(SUM(count), 0) FROM events WHERE url LIKE '%/again'`) != 12 {
		if time.Now().After(deadline) {
			t.Fatalf("repeat count stored %d of 12", stored(`SELECT COALESCE(SUM(count), 0) FROM events WHERE url LIKE '%/again'`))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEventsCollapseBounded: a client asking for ever new blocked URLs
// cannot grow the collapse map past maxSeen; the events past it go
// uncollapsed, none is lost.
func TestEventsCollapseBounded(t *testing.T) {
	s := &sink{}
	now := time.Now()
	l := newEventLog(s, func() time.Duration { return time.Minute }, func() time.Time { return now })
	const n = maxSeen + 1000
	for i := range n {
		l.record(reports.Event{Client: netip.MustParseAddr("10.0.0.9"), Source: "http", Name: "x.test", URL: fmt.Sprintf("http://x.test/%d", i),
			Action: "block", Reason: "category", Category: "pornography", Status: 403})
	}
	held := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		held += len(sh.seen)
		sh.mu.Unlock()
	}
	if held > maxSeen || int64(held) != l.keys.Load() {
		t.Errorf("%d keys held (counted %d), bound %d", held, l.keys.Load(), maxSeen)
	}
	s.mu.Lock()
	got := len(s.ev)
	s.mu.Unlock()
	if got != n {
		t.Errorf("%d events reached the sink, want %d", got, n)
	}
}

// TestEventsCollapseConcurrent: connections counting repeats of the same
// few kinds at once, while windows end (some before the flush sees them)
// and the flush runs beside them, lose no count and count none twice; the
// reference a repeat quotes is one the stored events carry.
func TestEventsCollapseConcurrent(t *testing.T) {
	var clock atomic.Int64
	start := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	now := func() time.Time { return start.Add(time.Duration(clock.Load())) }
	s := &sink{}
	l := newEventLog(s, func() time.Duration { return time.Second }, now)
	const workers, each = 8, 2000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	flushed := make(chan struct{})
	go func() { // the flush, as run does it
		defer close(flushed)
		for {
			select {
			case <-stop:
				return
			default:
				l.flush(false)
				runtime.Gosched()
			}
		}
	}()
	quoted := make([]map[string]bool, workers)
	for w := range workers {
		quoted[w] = map[string]bool{}
		wg.Go(func() {
			for i := range each {
				ev := reports.Event{Source: "http", Client: netip.MustParseAddr("10.1.0.1"), Name: "adult.test",
					URL: fmt.Sprintf("http://adult.test/%d", (w+i)%3), Action: "block", Category: "pornography",
					Status: 403, Count: 1, Ref: fmt.Sprintf("R-%d-%d", w, i), Time: now()}
				_, ref := l.recordRef(ev)
				quoted[w][ref] = true
				clock.Add(int64(time.Millisecond)) // 16 windows in all
			}
		})
	}
	wg.Wait()
	close(stop)
	<-flushed
	l.flush(true)
	total, stored := 0, map[string]bool{}
	evs := s.events()
	for _, e := range evs {
		total += e.Count
		stored[e.Ref] = true
	}
	if total != workers*each {
		t.Errorf("counted %d of %d requests in %d events", total, workers*each, len(evs))
	}
	for _, q := range quoted {
		for ref := range q {
			if !stored[ref] {
				t.Fatalf("an answer quoted %s, which no event carries", ref)
			}
		}
	}
	if len(evs) < 3*16 {
		t.Errorf("%d events: want at least one for each of 3 kinds in each of 16 windows", len(evs))
	}
	if n := l.keys.Load(); n != 0 {
		t.Errorf("%d keys counted after the last flush", n)
	}
	t.Logf("%d requests in %d events", workers*each, len(evs))
}

// TestSearchFlagDurable: a pupil's suicide-related search is allowed, but
// when its results reach the pupil the critical flag (the DSL's alert) is
// already in the database, so a crash then cannot lose it; and each term
// searched for within the collapse window is an event of its own (a
// second term was once counted as a repeat of the first, its words lost).
func TestSearchFlagDurable(t *testing.T) {
	st, w := storetest.Open(t)
	e := searchEnv(t, envOpts{sink: w})
	c := e.client("", "", "")
	for i := range 10 {
		q := fmt.Sprintf("how+to+k1ll+mys3lf+%d", i) // a new term: a new event each time
		resp, body := get(t, c, e.originURL("www.google.co.uk", "/search?q="+q))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("search not served: %d %s", resp.StatusCode, body)
		}
		if n := storetest.Int(t, st, `SELECT count(*) FROM events WHERE action = 'flag' AND search = ?`,
			fmt.Sprintf("how to k1ll mys3lf %d", i)); n != 1 {
			t.Fatalf("search %d answered with %d flag events stored", i, n)
		}
	}
	// The same term again is a repeat of its event (counted, not stored
	// anew); each other term was its own event, not a repeat of the first.
	get(t, c, e.originURL("www.google.co.uk", "/search?q=how+to+k1ll+mys3lf+0"))
	e.s.events.flush(true)
	var rows, terms int
	if err := st.DB().QueryRow(`SELECT count(*), count(DISTINCT search) FROM events WHERE action = 'flag'`).Scan(&rows, &terms); err != nil {
		t.Fatal(err)
	}
	if rows != 10 || terms != 10 {
		t.Errorf("%d flag rows, %d terms; want 10 and 10", rows, terms)
	}
}

// TestContentFlagDurable: a page over the self-harm report threshold goes
// through, and by the time its end reaches the pupil the critical flag
// (the DSL's alert) is in the database.
func TestContentFlagDurable(t *testing.T) {
	st, w := storetest.Open(t)
	ce := newContentEnvOpts(t, envOpts{sink: w})
	c := ce.client("", "", "")
	for i := range 10 {
		path := fmt.Sprintf("/flag%d", i) // a new page: a new event each time
		ce.page(path, "text/html; charset=utf-8", htmlHead, "<p>"+harmful4+"</p>", "</div></body></html>")
		resp, _ := get(t, c, ce.url("pages.test", path))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("page not served: %d", resp.StatusCode)
		}
		if n := storetest.Int(t, st, `SELECT count(*) FROM events WHERE action = 'flag' AND url LIKE ?`, "%"+path); n != 1 {
			t.Fatalf("page %d ended with %d flag events stored", i, n)
		}
	}
}

// seqSink numbers events as a DurableSink does, every one durable at once.
type seqSink struct {
	sink
	seq atomic.Uint64
}

func (s *seqSink) RecordSeq(ev reports.Event) uint64        { s.Record(ev); return s.seq.Add(1) }
func (s *seqSink) IsDurable(uint64) bool                    { return true }
func (s *seqSink) AfterDurable(uint64, reports.Waiter) bool { return false }

// TestSeriesEndTold: the end of a window whose repeats went to the store
// as a series is told once, after its last follow-up: on it when repeats
// came since, alone (reports.EndOfSeries) when none did, whether the flush
// or the next request finds the window ended; a window with no repeats
// tells nothing.
func TestSeriesEndTold(t *testing.T) {
	now := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	s := &seqSink{}
	l := newEventLog(s, func() time.Duration { return time.Minute }, func() time.Time { return now })
	evFor := func(path string) reports.Event {
		return reports.Event{Source: "http", Client: netip.MustParseAddr("10.1.0.1"), Name: "adult.test",
			URL: "http://adult.test/" + path, Action: "block", Category: "pornography", Count: 1}
	}
	seqs := map[string]uint64{}
	for _, p := range []string{"quiet", "last", "flushed", "asked"} {
		seqs[p] = l.record(evFor(p))
	}
	for _, p := range []string{"last", "flushed", "asked"} {
		l.record(evFor(p))
	}
	l.flush(false) // the open windows' repeats go as series
	l.record(evFor("last"))
	now = now.Add(2 * time.Minute)
	l.record(evFor("asked")) // a new window: the old one ends here
	l.flush(false)
	ends := map[uint64][]reports.Event{}
	for _, e := range s.events() {
		if e.Series != 0 {
			ends[e.Series] = append(ends[e.Series], e)
		}
	}
	if len(ends[seqs["quiet"]]) != 0 {
		t.Errorf("a window with no repeats sent %v", ends[seqs["quiet"]])
	}
	for p, want := range map[string][]int{"last": {1, 1}, "flushed": {1, 0}, "asked": {1, 0}} {
		got := ends[seqs[p]]
		if len(got) != len(want) {
			t.Errorf("%s: %d follow-ups, want %d", p, len(got), len(want))
			continue
		}
		for i, e := range got {
			if e.Count != want[i] || e.SeriesEnd != (i == len(got)-1) {
				t.Errorf("%s: follow-up %d: count %d, SeriesEnd %v; want count %d, the end on the last", p, i+1, e.Count, e.SeriesEnd, want[i])
			}
		}
	}
}

// TestMistakeReportPageAfterDurable: the page that tells a pupil their
// "report a mistake" was recorded goes out only once the report is
// durable: with the database locked and the spill directory unusable (a
// full disk) it says it could not be sent instead; with the database
// taking writes the report is in it when the page arrives.
func TestMistakeReportPageAfterDurable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	st, err := reports.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	blocker := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := reports.NewWriter(st, reports.Options{SpillDir: filepath.Join(blocker, "spill")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close(); st.Close() })
	e := newEnv(t, envOpts{sink: w})
	admin := httptest.NewServer(e.s.AdminHandler())
	t.Cleanup(admin.Close)
	post := func(ref string) *http.Response {
		t.Helper()
		e.s.reports.mu.Lock() // the test config's two reports an hour
		clear(e.s.reports.hits)
		e.s.reports.mu.Unlock()
		resp, err := http.PostForm(admin.URL+reportPath, e.reportForm("127.0.0.1", ref, "http://adult.test/help", "pornography", "a biology page"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}

	// Another program holds the database's write lock; the spill
	// directory cannot be made.
	db, err := sql.Open("sqlite3", "file:"+url.PathEscape(path)+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	if resp := post("GH-AAAA-DDDD"); resp.StatusCode == http.StatusOK {
		t.Errorf("with the report neither stored nor spilled (failures %d), the page said it was recorded", w.Failures())
	}
	if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	// The writer takes the queued report once its retry comes.
	deadline := time.Now().Add(time.Minute) // a safety net only
	for ok, _ := w.Healthy(); !ok; ok, _ = w.Healthy() {
		if time.Now().After(deadline) {
			t.Fatal("the writer never recovered")
		}
		time.Sleep(10 * time.Millisecond)
	}

	const ref = "GH-BBBB-CCCC"
	if resp := post(ref); resp.StatusCode != http.StatusOK {
		t.Fatalf("with the database working: status %d", resp.StatusCode)
	}
	if n := storetest.Int(t, st, `SELECT count(*) FROM events WHERE kind = 4 AND ref = ?`, ref); n != 1 {
		t.Errorf("the page said recorded with %d reports stored", n)
	}
}
