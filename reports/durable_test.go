package reports

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// lockDB holds the database's write lock from another connection, as a
// backup tool or a stuck CLI would; unlock releases it.
func lockDB(t *testing.T, path string) (unlock func()) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+url.PathEscape(path)+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	done := false
	unlock = func() {
		if done {
			return
		}
		done = true
		if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
			t.Error(err)
		}
		conn.Close()
		db.Close()
	}
	t.Cleanup(unlock)
	return unlock
}

func (w *Writer) queued() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.queue)
}

// waitFor polls cond (a safety deadline only; the tests bound work, not time).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLockedStoreSpillsBounded: while another connection holds the
// database's lock, events keep arriving. The writer reports the failure,
// keeps its queue bounded by spilling to disk, and once the lock goes every
// high and critical event (and every low one it took) is in the database.
func TestLockedStoreSpillsBounded(t *testing.T) {
	st, w := testWriter(t, Options{QueueSize: 100, MaxBatch: 500})
	unlock := lockDB(t, st.Path())
	t0 := time.Now().UTC()
	w.Record(ev(t0, "10.9.0.1", "students", "self-harm", "first.example"))
	waitFor(t, "the writer reports the failure", func() bool { ok, _ := w.Healthy(); return !ok })
	if _, why := w.Healthy(); !strings.Contains(why, "database") {
		t.Errorf("Healthy's reason: %q", why)
	}
	const n = 120_000
	high, lowOK, maxQueued := 1, 0, 0
	for i := range n {
		at := t0.Add(time.Duration(i) * time.Millisecond)
		if i%3 != 2 {
			if !w.Record(ev(at, fmt.Sprintf("10.1.%d.%d", i/250%250, i%250+1), "students", "self-harm", fmt.Sprintf("s%d.example", i))) {
				t.Fatalf("critical event %d refused", i)
			}
			high++
		} else if w.Record(ev(at, "10.2.0.1", "students", "games", fmt.Sprintf("g%d.example", i))) {
			lowOK++
		}
		if i%1000 == 0 {
			maxQueued = max(maxQueued, w.queued())
		}
	}
	w.Flush() // everything taken is spilled now
	if w.Spilled() == 0 || w.Failures() == 0 {
		t.Fatalf("spilled %d, failures %d while the database was locked", w.Spilled(), w.Failures())
	}
	if c := count(t, st, "SELECT count(*) FROM events"); c != 0 {
		t.Fatalf("%d events written through the lock?", c)
	}
	if maxQueued > w.hardCap() {
		t.Errorf("the queue held %d events while the database failed (of %d recorded)", maxQueued, n)
	}
	unlock()
	waitFor(t, "the spill files are replayed", func() bool { w.Flush(); return w.Spilled() == 0 })
	w.Close()
	if c := count(t, st, "SELECT count(*) FROM events WHERE category = 'self-harm'"); c != int64(high) {
		t.Errorf("critical events stored %d, want %d", c, high)
	}
	if c := count(t, st, "SELECT count(*) FROM events WHERE category = 'games'"); c != int64(lowOK) {
		t.Errorf("low events stored %d, want the %d taken", c, lowOK)
	}
	if ok, why := w.Healthy(); !ok {
		t.Errorf("still unhealthy after recovery: %s", why)
	}
	if files, _ := filepath.Glob(st.Path() + ".spill-*"); len(files) != 0 {
		t.Errorf("spill files left: %v", files)
	}
	if sum := count(t, st, "SELECT COALESCE(SUM(count),0) FROM incidents"); sum != count(t, st, "SELECT SUM(count) FROM events WHERE incident_id IS NOT NULL") {
		t.Errorf("incident counts %d do not match their events", sum)
	}
	t.Logf("recorded %d (%d critical, %d low taken); queue peak %d; dropped %d low", n, high, lowOK, maxQueued, w.Dropped())
}

// TestSpillReplayedAfterRestart: a writer closed while the database is
// locked leaves its events in a spill file; the next writer replays them
// once, even when the first replay's file could not be removed.
func TestSpillReplayedAfterRestart(t *testing.T) {
	st := openTemp(t)
	w, err := NewWriter(st, Options{Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	unlock := lockDB(t, st.Path())
	t0 := time.Now().UTC()
	for i := range 1000 {
		w.Record(ev(t0.Add(time.Duration(i)*time.Millisecond), "10.1.0.1", "students", "pornography", fmt.Sprintf("p%d.example", i)))
	}
	w.Close()
	unlock()
	files, _ := filepath.Glob(st.Path() + ".spill-*.jsonl")
	if len(files) == 0 || count(t, st, "SELECT count(*) FROM events") != 0 {
		t.Fatalf("closing with the database locked: spill files %v", files)
	}
	// A copy stands for a file whose removal was cut short by a crash.
	data, _ := os.ReadFile(files[0])
	w2, err := NewWriter(st, Options{Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "replayed", func() bool { w2.Flush(); return w2.Spilled() == 0 })
	w2.Close()
	if c := count(t, st, "SELECT count(*) FROM events"); c != 1000 {
		t.Fatalf("%d events after replay, want 1000", c)
	}
	if err := os.WriteFile(files[0], data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := st.db.Exec(`INSERT INTO spills (name, ts) VALUES (?, 0)`, filepath.Base(files[0])); err != nil {
		t.Fatal(err)
	}
	w3, err := NewWriter(st, Options{Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	w3.Close()
	if c := count(t, st, "SELECT count(*) FROM events"); c != 1000 {
		t.Fatalf("%d events after a second start, want 1000 (replayed twice?)", c)
	}
	if _, err := os.Stat(files[0]); !os.IsNotExist(err) {
		t.Errorf("a replayed spill file was left: %v", err)
	}
}

// TestSeriesEndNotSpilled: while the database fails, the end of a series
// alone is not written to the spill file, nor counted as waiting there.
func TestSeriesEndNotSpilled(t *testing.T) {
	st, w := testWriter(t, Options{})
	unlock := lockDB(t, st.Path())
	defer unlock()
	t0 := time.Now().UTC()
	for i := range 10 {
		e := ev(t0, "10.1.0.1", "students", "games", fmt.Sprintf("g%d.example", i))
		e.Series, e.Count = uint64(i+1), 2
		w.Record(e)
		w.Record(EndOfSeries(uint64(i + 1)))
	}
	w.Close()
	files, _ := filepath.Glob(st.Path() + ".spill-*.jsonl")
	lines := 0
	for _, f := range files {
		n, err := countLines(f)
		if err != nil {
			t.Fatal(err)
		}
		lines += n
	}
	if lines != 10 || w.Spilled() != 10 {
		t.Errorf("%d lines spilled (%d counted), want the 10 repeat counts only", lines, w.Spilled())
	}
}

// TestStoreAndSpillFailingLosesLoudly: with the database locked and the
// spill directory unusable, memory stays bounded: events beyond the cap are
// counted as lost (never silently), and answers are not held.
func TestStoreAndSpillFailingLosesLoudly(t *testing.T) {
	st := openTemp(t)
	blocker := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(st, Options{QueueSize: 100, SpillDir: filepath.Join(blocker, "spill"), Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	lockDB(t, st.Path())
	t0 := time.Now().UTC()
	seq := w.RecordSeq(ev(t0, "10.1.0.1", "students", "self-harm", "a.example"))
	p := &parker{ch: make(chan struct{}, 1)}
	if w.AfterDurable(seq, p) {
		<-p.ch // told after the failed attempts, not held
	}
	if w.IsDurable(seq) {
		t.Fatal("an event neither committed nor spilled counts as durable")
	}
	attempts := w.hardCap() + 5000
	for i := range attempts {
		w.Record(ev(t0, "10.1.0.2", "students", "self-harm", fmt.Sprintf("s%d.example", i)))
	}
	w.Flush()
	q := w.queued()
	if q > w.hardCap() {
		t.Errorf("queue %d over the cap %d", q, w.hardCap())
	}
	if w.Lost() == 0 || uint64(q)+w.Lost() != uint64(attempts)+1 {
		t.Errorf("lost %d + held %d, want all %d accounted for", w.Lost(), q, attempts+1)
	}
	if ok, why := w.Healthy(); ok {
		t.Error("healthy while losing events")
	} else {
		t.Log(why)
	}
}

// TestSeriesAddsToOneRow: the repeats of a collapsed event, sent as they
// accumulate, add up in one row and in the incident.
func TestSeriesAddsToOneRow(t *testing.T) {
	st := openTemp(t)
	w, err := NewWriter(st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().UTC()
	first := ev(t0, "10.1.0.1", "students", "pornography", "p.example")
	seq := w.RecordSeq(first)
	w.Flush()
	for i := range 5 {
		rep := first
		rep.Time, rep.Count, rep.Series = t0.Add(time.Second), i+1, seq
		w.Record(rep)
		w.Flush()
	}
	w.Close()
	if c := count(t, st, "SELECT count(*) FROM events"); c != 2 {
		t.Errorf("%d rows, want the first event and one row of repeats", c)
	}
	if c := count(t, st, "SELECT SUM(count) FROM events"); c != 1+15 {
		t.Errorf("stored count %d, want 16", c)
	}
	if c := count(t, st, "SELECT SUM(count) FROM incidents"); c != 16 {
		t.Errorf("incident count %d, want 16", c)
	}
}

// TestSeriesBounded: the writer remembers at most maxSeries series (a
// flood of distinct repeated names cannot grow it without limit), and
// the repeats of a forgotten series are stored all the same, in a new row.
func TestSeriesBounded(t *testing.T) {
	defer func(n int) { maxSeries = n }(maxSeries)
	maxSeries = 100
	st := openTemp(t)
	w, err := NewWriter(st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().UTC()
	const n = 300
	var want int64
	for round := range 2 {
		for i := range n {
			e := ev(t0, "10.1.0.1", "students", "games", fmt.Sprintf("g%d.example", i))
			e.Series, e.Count = uint64(i+1), round+2
			w.Record(e)
			want += int64(round + 2)
			if i%50 == 49 {
				w.Flush()
				if len(w.series) > maxSeries {
					t.Fatalf("round %d, %d series: %d remembered, bound %d", round, i+1, len(w.series), maxSeries)
				}
			}
		}
	}
	rows := count(t, st, "SELECT count(*) FROM events")
	if rows <= n {
		t.Errorf("%d rows for %d series sent twice, %d remembered at most: want some forgotten (a second row)", rows, n, maxSeries)
	}
	// The series of the last commit are kept through the trim: a repeat
	// of one adds to its row.
	for range 2 {
		e := ev(t0, "10.1.0.1", "students", "games", "again.example")
		e.Series, e.Count = 1000, 7
		w.Record(e)
		want += 7
		w.Flush()
	}
	w.Close()
	if c := count(t, st, "SELECT SUM(count) FROM events"); c != want {
		t.Errorf("stored count %d, want %d", c, want)
	}
	if c := count(t, st, "SELECT count(*) FROM events"); c != rows+1 {
		t.Errorf("a series sent twice after the flood made %d rows, want 1", c-rows)
	}
}

// TestSeriesEndForgotten: a series whose window has ended (its last
// follow-up marked SeriesEnd, or the mark alone when no repeats came since,
// EndOfSeries) is forgotten once committed, and the map that held a burst's
// series gives its room back; the mark alone stores no row, and the counts
// are exact.
func TestSeriesEndForgotten(t *testing.T) {
	st := openTemp(t)
	w, err := NewWriter(st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().UTC()
	const n = 2000
	for i := range n {
		e := ev(t0, "10.1.0.1", "students", "games", fmt.Sprintf("g%d.example", i))
		e.Series, e.Count = uint64(i+1), 2
		w.Record(e)
	}
	w.Flush()
	if len(w.series) != n {
		t.Fatalf("%d series remembered while their windows are open, want %d", len(w.series), n)
	}
	for i := range n {
		e := ev(t0, "10.1.0.1", "students", "games", fmt.Sprintf("g%d.example", i))
		e.Series, e.Count, e.SeriesEnd = uint64(i+1), 3, true
		if i%2 == 1 {
			e = EndOfSeries(uint64(i + 1))
		}
		w.Record(e)
	}
	w.Flush()
	if len(w.series) != 0 || w.seriesPeak >= n/2 {
		t.Errorf("after every series ended: %d remembered (room for %d), want none and the map rebuilt smaller", len(w.series), w.seriesPeak)
	}
	if got := w.Written(); got != n+n/2 {
		t.Errorf("%d events counted as written, want %d (the marks alone are not events)", got, n+n/2)
	}
	w.Close()
	if c := count(t, st, "SELECT count(*) FROM events"); c != n {
		t.Errorf("%d rows, want one a series (the mark alone stores none)", c)
	}
	if c := count(t, st, "SELECT SUM(count) FROM events"); c != n*2+n/2*3 {
		t.Errorf("stored count %d, want %d", c, n*2+n/2*3)
	}
}

// TestAfterDurable: a waiter is told once its event is in the database.
func TestAfterDurable(t *testing.T) {
	st, w := testWriter(t, Options{})
	for i := range 200 {
		seq := w.RecordSeq(ev(time.Now().UTC(), "10.1.0.1", "students", "pornography", fmt.Sprintf("p%d.example", i)))
		if seq == 0 {
			t.Fatal("not taken")
		}
		WaitDurable(w, seq)
		if !w.IsDurable(seq) {
			t.Fatal("told before durable")
		}
		if c := count(t, st, "SELECT count(*) FROM events WHERE name = ?", fmt.Sprintf("p%d.example", i)); c != 1 {
			t.Fatalf("event %d: %d rows when reported durable", i, c)
		}
	}
}

// TestLazyEventsShareCommits: events nobody waits for (here a stream of
// repeat counts and an allowed-request log, one every millisecond) are
// committed together, about once per lazyDelay, not one commit each (the
// old writer committed each as it came: hundreds of commits, each
// rewriting the same pages in the WAL). A block answer's event (or a
// flag) that arrives meanwhile is still committed at once, on its own:
// the lazy events queued before it wait for their deadline.
func TestLazyEventsShareCommits(t *testing.T) {
	st, w := testWriter(t, Options{})
	at := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	first := ev(at, "10.0.0.5", "students", "pornography", "adult.example")
	seq := w.RecordSeq(first)
	WaitDurable(w, seq) // the first of a kind: committed at once
	c0, start := w.Commits(), time.Now()
	const n = 300
	for i := range n {
		e := ev(at, "10.0.0.5", "students", "pornography", "adult.example")
		e.Series, e.Count = seq, 1
		if i%2 == 1 {
			e = ev(at, "10.0.0.6", "students", "", fmt.Sprintf("allowed%d.example", i))
		}
		if w.RecordSeq(e) == 0 {
			t.Fatal("event refused")
		}
		time.Sleep(time.Millisecond)
	}
	waitFor(t, "all lazy events committed", func() bool { return w.Written() == n+1 })
	elapsed := time.Since(start)
	// About one commit per lazyDelay of the stream (plus the last), never one per event.
	if got, most := w.Commits()-c0, uint64(elapsed/lazyDelay)+3; got > most {
		t.Fatalf("%d events nobody waits for took %d commits in %v; want at most %d", n, got, elapsed, most)
	}
	if got := count(t, st, `SELECT sum(count) FROM events WHERE name = 'adult.example'`); got != 1+n/2 {
		t.Fatalf("attempts stored for adult.example = %d, want %d", got, 1+n/2)
	}
	// From here the lazy clock never strikes: only an urgent event or a
	// waiter gets anything committed, and only that.
	w.lazyAfter.Store(int64(time.Hour))
	lazy := w.RecordSeq(ev(at, "10.0.0.6", "students", "", "allowed-more.example"))
	// A flag (a watchlisted search that went through) is urgent: it is
	// committed at once, on its own, ahead of the lazy event before it.
	flag := ev(at, "10.0.0.8", "students", "self-harm", "search.example")
	flag.Action = "flag"
	fseq := w.RecordSeq(flag)
	waitFor(t, "the flag committed", func() bool { return w.Written() == n+2 })
	if !w.IsDurable(fseq) || w.IsDurable(lazy) {
		t.Fatalf("after the flag's commit: flag durable %v (want true), the lazy event before it %v (want false)",
			w.IsDurable(fseq), w.IsDurable(lazy))
	}
	// A new block answer's event does not wait for the lazy clock, nor for
	// the lazy events queued before it.
	lazy2 := w.RecordSeq(ev(at, "10.0.0.6", "students", "", "allowed-again.example"))
	blocked := w.RecordSeq(ev(at, "10.0.0.7", "students", "pornography", "other-adult.example"))
	if w.IsDurable(blocked) {
		t.Fatal("durable before any commit")
	}
	p := &parker{ch: make(chan struct{}, 1)}
	if !w.AfterDurable(blocked, p) {
		t.Fatal("nothing to wait for")
	}
	<-p.ch // never returns if the waiter sat behind the lazy clock for ever
	if !w.IsDurable(blocked) || w.Written() != n+3 || w.IsDurable(lazy) || w.IsDurable(lazy2) {
		t.Fatalf("after the waited-for commit: durable %v, written %d (want %d), lazy ones durable %v %v (want false)",
			w.IsDurable(blocked), w.Written(), n+3, w.IsDurable(lazy), w.IsDurable(lazy2))
	}
	if got := count(t, st, `SELECT count(*) FROM events WHERE name IN ('allowed-more.example', 'allowed-again.example')`); got != 0 {
		t.Fatalf("%d lazy events were committed with the held ones", got)
	}
	// Flush writes the lazy ones too, and durable then covers everything.
	w.Flush()
	if !w.IsDurable(lazy2) || w.Written() != n+5 || w.earlyN.Load() != 0 {
		t.Fatalf("after Flush: lazy durable %v, written %d (want %d), early %d (want 0)", w.IsDurable(lazy2), w.Written(), n+5, w.earlyN.Load())
	}
}

// heldOffWriter opens a store and a writer on it whose lazy clock never
// strikes: only held and urgent events, full batches and Flush commit.
func heldOffWriter(t *testing.T, opt Options) (*Store, *Writer) {
	t.Helper()
	st, w := testWriter(t, opt)
	w.lazyAfter.Store(int64(time.Hour))
	return st, w
}

// writtenAt is a Waiter that notes how many events the writer had written
// when it was told.
type writtenAt struct {
	w    *Writer
	n    chan uint64
	seen atomic.Bool
}

func (x *writtenAt) Durable() {
	if !x.seen.Swap(true) {
		x.n <- x.w.Written()
	}
}

// TestHeldPreemptsLazyCommit: a block answer that starts waiting while a
// large lazy batch (repeat counts, log lines) is being committed waits for
// at most preemptAfter of its events: the lazy commit stops there, the
// held event is committed on its own, and the lazy batch goes on after.
// Before, the held event was committed after the whole lazy batch and any
// queued behind it (1-15 ms of held DNS answers after a burst).
func TestHeldPreemptsLazyCommit(t *testing.T) {
	for _, c := range []struct {
		bg    bool
		lazyN int // lazyBatch: the full batch starts the commit; fewer: Flush does
	}{{false, 500}, {true, 500}, {false, lazyBatch}, {true, lazyBatch}} {
		t.Run(fmt.Sprintf("background=%v,lazy=%d", c.bg, c.lazyN), func(t *testing.T) {
			st, w := heldOffWriter(t, Options{Background: c.bg})
			at := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
			const at100 = 100
			x := &writtenAt{w: w, n: make(chan uint64, 1)}
			var blocked atomic.Uint64
			var added atomic.Int64 // events added so far, over the batch's transactions
			w.mu.Lock()            // the hook is read by the writer's goroutine
			w.onAdd = func(int) {
				if added.Add(1)-1 == at100 && blocked.Load() == 0 {
					seq := w.RecordSeq(ev(at, "10.0.0.7", "students", "pornography", "adult.example"))
					blocked.Store(seq)
					if !w.AfterDurable(seq, x) {
						t.Error("nothing to wait for")
					}
				}
			}
			w.mu.Unlock()
			for i := range c.lazyN {
				if w.RecordSeq(ev(at, "10.0.0.6", "students", "", fmt.Sprintf("allowed%d.example", i))) == 0 {
					t.Fatal("event refused")
				}
			}
			if c.lazyN < lazyBatch {
				w.Flush()
			}
			// The rest of a preempted batch goes on at once after the held
			// event, not at the lazy deadline (an hour away).
			waitFor(t, "every event written", func() bool { return w.Written() == uint64(c.lazyN+1) })
			var got uint64
			select {
			case got = <-x.n:
			default:
				t.Fatal("the waiter was never told")
			}
			// The lazy commit stopped after the event it was adding when the
			// waiter came (at100+1 written), then the held one alone. On the
			// committer's idle thread the batch is cut into transactions of
			// idleBatch events, and it stops at the end of the one it was in.
			want := uint64(at100 + 2)
			if w.idleThreads.Load() > 0 {
				want = uint64((at100/idleBatch+1)*idleBatch + 1)
			}
			if got != want {
				t.Fatalf("the held event was durable after %d events were written, want %d (the lazy batch is %d)", got, want, c.lazyN)
			}
			if !w.IsDurable(blocked.Load()) {
				t.Fatal("the held event is not durable")
			}
			if n := count(t, st, `SELECT count(*) FROM events`); n != int64(c.lazyN+1) {
				t.Fatalf("%d events stored, want %d", n, c.lazyN+1)
			}
		})
	}
}

// TestHeldStreamDoesNotStarveLazy: while block answers keep waiting (a
// flood of new blocked names), the lazy events (repeat counts) are still
// committed at their deadline. The held commits once pushed the lazy
// deadline back each time, and a SIGKILL lost every repeat count.
func TestHeldStreamDoesNotStarveLazy(t *testing.T) {
	_, w := testWriter(t, Options{})
	w.lazyAfter.Store(int64(20 * time.Millisecond))
	at := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	lazy := w.RecordSeq(ev(at, "10.0.0.6", "students", "", "allowed.example"))
	const most = 3000 // held commits: each takes far longer than 20 ms / most
	for i := 0; !w.IsDurable(lazy); i++ {
		if i == most {
			t.Fatalf("the lazy event was not committed during %d held commits", most)
		}
		WaitDurable(w, w.RecordSeq(ev(at, "10.0.0.7", "students", "pornography", fmt.Sprintf("adult%d.example", i))))
	}
}

// TestHeldFirstKeepsIncidentStart: a held event committed ahead of an
// earlier lazy one of the same incident does not move the incident's
// start to its own time.
func TestHeldFirstKeepsIncidentStart(t *testing.T) {
	st, w := heldOffWriter(t, Options{})
	at := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	early := ev(at, "10.0.0.5", "students", "pornography", "one.example")
	early.Series = 1 // a repeat count whose row is gone: lazy, and a row of its own
	w.RecordSeq(early)
	WaitDurable(w, w.RecordSeq(ev(at.Add(time.Minute), "10.0.0.5", "students", "pornography", "two.example")))
	if n := count(t, st, `SELECT count(*) FROM events`); n != 1 {
		t.Fatalf("%d events stored before the lazy one, want 1 (the held one)", n)
	}
	w.Flush()
	if got := count(t, st, `SELECT first_ts FROM incidents`); got != at.UnixMilli() {
		t.Fatalf("incident starts at %d, want %d (the earlier lazy event)", got, at.UnixMilli())
	}
	if n := count(t, st, `SELECT count(*) FROM incidents`); n != 1 {
		t.Fatalf("%d incidents, want 1", n)
	}
}

// TestQueueKeptBetweenBatches: the writer keeps its event buffers between
// lazy commits, so a steady stream of repeat counts (the DNS resolver's
// follow-ups every half second) appends into them without allocating;
// they were dropped whenever the writer went idle and regrown from
// nothing for every batch, which was most of what the DNS path's events
// allocated after a burst.
func TestQueueKeptBetweenBatches(t *testing.T) {
	_, w := testWriter(t, Options{})
	at := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	first := w.RecordSeq(ev(at, "10.0.0.5", "students", "pornography", "adult.example"))
	WaitDurable(w, first)
	repeat := ev(at, "10.0.0.5", "students", "pornography", "adult.example")
	repeat.Series, repeat.Count = first, 1
	// Large batches, then small ones: a small batch taken from a grown
	// buffer must not drop it (the queue then regrew from nothing).
	sizes := []int{500, 500, 500, 500, 50, 50, 50}
	written := w.Written()
	allocs := make([]float64, 0, len(sizes))
	for _, batch := range sizes {
		allocs = append(allocs, testing.AllocsPerRun(1, func() {
			for range batch {
				if w.RecordSeq(repeat) == 0 {
					t.Fatal("event refused")
				}
			}
		}))
		written += 2 * uint64(batch) // AllocsPerRun runs it once more to warm up
		waitFor(t, "the batch committed", func() bool { return w.Written() == written })
	}
	// The first batch grows the buffers; after it, appending is free.
	for i, a := range allocs[2:] {
		if a > 0 {
			t.Errorf("batch %d: %v allocations to queue %d events, want 0 (all batches: %v)", i+3, a, sizes[i+2], allocs)
		}
	}
}

// TestCommitAllocsBounded: storing an event allocates little (the
// process's garbage drives its collections, which the DNS tail after a
// burst feels). Through database/sql each insert built a slice of its 31
// arguments (1.3 KiB) and a result wrapper: 1,636 bytes in 19 allocations
// an event stored, against 305 bytes in 16 through the driver connection
// (batchTx.exec), 193 in 9 with the strings most rows repeat boxed once
// (Writer.box) and 185 in 8 with the address's text kept (Writer.ipKey;
// 8.9 allocations and 280 bytes under the race detector).
// A blocked name's event that joins its client's open incident (most of
// what the DNS path stores after a burst) made the client's address and
// incident key again each time too: 18 allocations and 265 bytes, now 6
// and 89 (Writer.ipKey).
func TestCommitAllocsBounded(t *testing.T) {
	for _, c := range []struct {
		kind           string
		allocs, bytes  float64
		cat, reason, l string
	}{
		{"allowed", 12, 320, "", "allowed", "none"},
		{"blocked, in an open incident", 10, 160, "gambling", "category", "ut1-gambling"},
	} {
		t.Run(c.kind, func(t *testing.T) {
			_, w := heldOffWriter(t, Options{})
			at := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
			const n = 500
			evs := make([]Event, 0, 4*n)
			for i := range 4 * n {
				e := ev(at.Add(time.Duration(i)*time.Millisecond), "10.0.0.6", "students", c.cat, fmt.Sprintf("site%d.example", i))
				e.QType, e.Reason, e.List = "A", c.reason, c.l
				evs = append(evs, e)
			}
			next := 0
			store := func() {
				for range n {
					w.RecordSeq(evs[next])
					next++
				}
				w.Flush()
			}
			store() // warm: prepared statements, and the queue's two buffers
			store()
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			store()
			runtime.ReadMemStats(&m1)
			allocs := float64(m1.Mallocs-m0.Mallocs) / n
			bytes := float64(m1.TotalAlloc-m0.TotalAlloc) / n
			t.Logf("%.1f allocations, %.0f bytes an event stored", allocs, bytes)
			if allocs > c.allocs || bytes > c.bytes {
				t.Fatalf("%.1f allocations, %.0f bytes an event stored, want at most %.0f and %.0f", allocs, bytes, c.allocs, c.bytes)
			}
		})
	}
}

// TestCommitsLeaveCheckpointsToCheckpointer: the writer's commits never
// checkpoint the WAL (SQLite's automatic checkpoint ran inside the commit
// that took the WAL past 1,000 pages, milliseconds of copying and an
// fsync, possibly while a block answer waited for it); the checkpointer
// does, on its own, so the WAL stays small.
func TestCommitsLeaveCheckpointsToCheckpointer(t *testing.T) {
	walAfter := func(every time.Duration) (int64, uint64) {
		defer func(e time.Duration) { checkpointEvery = e }(checkpointEvery)
		checkpointEvery = every
		st := openTemp(t)
		w, err := NewWriter(st, Options{Log: testLog(t)})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		at := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
		for b := range 100 {
			// Counted before the batch: its last commit comes after this,
			// and the checkpointer checkpoints after a commit it has not
			// seen. (Counted after the Flush, a checkpoint that came in
			// between was the last one, and the wait never ended.)
			n := w.checkpoints.Load()
			for i := range 1000 {
				w.RecordSeq(ev(at, "10.0.0.6", "students", "", fmt.Sprintf("allowed-%d-%d.example", b, i)))
			}
			w.Flush()
			if every < time.Second {
				waitFor(t, "a checkpoint", func() bool { return w.checkpoints.Load() > n })
			}
		}
		fi, err := os.Stat(st.Path() + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size(), w.checkpoints.Load()
	}
	// No checkpointer: the WAL holds every commit (100,000 events), far
	// past the 1,000 pages at which a commit used to checkpoint.
	size, _ := walAfter(time.Hour)
	if size < 3000*4096 {
		t.Fatalf("WAL %d bytes after 100,000 events with no checkpointer: a commit checkpointed it", size)
	}
	// With it, the WAL is reused from its start after each checkpoint.
	size2, n := walAfter(10 * time.Millisecond)
	if n == 0 || size2 > size/4 {
		t.Fatalf("with the checkpointer: %d checkpoints, WAL %d bytes (%d without)", n, size2, size)
	}
	t.Logf("WAL %d bytes without the checkpointer, %d with it (%d checkpoints)", size, size2, n)
}

// TestWALTruncatedAfterStarvedCheckpointer: while the checkpointer could
// not run (its idle-priority thread starved by a saturated CPU; here, the
// pool's connections all taken) the WAL grew; once it runs, a WAL past
// walTruncateBytes is truncated, not kept at its largest (SQLite reuses
// the file from its start but never shrinks it: 117 MB after 15 s of the
// peer harness's DNS load, for a 12 MB database).
func TestWALTruncatedAfterStarvedCheckpointer(t *testing.T) {
	defer func(e time.Duration, b int64) { checkpointEvery, walTruncateBytes = e, b }(checkpointEvery, walTruncateBytes)
	checkpointEvery = 5 * time.Millisecond
	walTruncateBytes = 1 << 20
	st, w := testWriter(t, Options{})
	var held []*sql.Conn // the pool's other three: the checkpointer waits
	for range 3 {
		c, err := st.db.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	release := func() {
		for _, c := range held {
			c.Close()
		}
	}
	defer release() // before the cleanup's w.Close, which waits for the checkpointer
	at := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	for b := range 20 {
		for i := range 1000 {
			w.RecordSeq(ev(at, "10.0.0.6", "students", "", fmt.Sprintf("allowed-%d-%d.example", b, i)))
		}
		w.Flush()
	}
	walSize := func() int64 {
		fi, err := os.Stat(st.Path() + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	grown := walSize()
	if grown < 2<<20 {
		t.Fatalf("WAL %d bytes after 20,000 events with the checkpointer held off", grown)
	}
	// A reader in a transaction locks the truncation out; once it has
	// ended, the truncation is tried again with no commit since.
	ctx := context.Background()
	if _, err := held[0].ExecContext(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	var rows int
	if err := held[0].QueryRowContext(ctx, "SELECT count(*) FROM events").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	c0 := w.checkpoints.Load()
	for _, c := range held[1:] {
		c.Close()
	}
	// Two: the first may have counted its commits before the last of them.
	waitFor(t, "two checkpoints", func() bool { return w.checkpoints.Load() >= c0+2 })
	if n := w.walTruncations.Load(); n != 0 {
		t.Fatalf("WAL truncated %d times under a reader's transaction", n)
	}
	if _, err := held[0].ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	release()
	waitFor(t, "the WAL truncated", func() bool { return w.walTruncations.Load() > 0 })
	if size := walSize(); size > 1<<20 {
		t.Fatalf("WAL %d bytes after its truncation (%d before)", size, grown)
	}
	t.Logf("WAL %d bytes with the checkpointer held off, %d after", grown, walSize())
}

// TestOpenIncidentsBounded: blocked requests from ever new client
// addresses (a UDP query's source can be any) open an incident each; the
// incidents held open in memory stay within their bound, and every event
// and incident is stored all the same.
func TestOpenIncidentsBounded(t *testing.T) {
	defer func(n int) { maxOpen = n }(maxOpen)
	maxOpen = 100
	st := openTemp(t)
	w, err := NewWriter(st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().UTC()
	const n = 400
	for i := range n {
		w.Record(ev(t0, fmt.Sprintf("10.2.%d.%d", i/256, i%256), "students", "pornography", "porn.example"))
		if i%50 == 49 {
			w.Flush()
			if len(w.open) > maxOpen {
				t.Fatalf("%d clients: %d incidents held open, bound %d", i+1, len(w.open), maxOpen)
			}
		}
	}
	w.Close()
	if c := count(t, st, "SELECT count(*) FROM events"); c != n {
		t.Errorf("%d events stored, want %d", c, n)
	}
	if c := count(t, st, "SELECT count(*) FROM incidents"); c != n {
		t.Errorf("%d incidents stored, want %d", c, n)
	}
}

// TestOpenIncidentsShrink: the room a flood of client addresses gave the
// open incidents is given back once their window has ended.
func TestOpenIncidentsShrink(t *testing.T) {
	st := openTemp(t)
	var mu sync.Mutex
	now := time.Now().UTC()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	w, err := NewWriter(st, Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	const n = 3000
	for i := range n {
		w.Record(ev(clock(), fmt.Sprintf("10.2.%d.%d", i/256, i%256), "students", "pornography", "porn.example"))
	}
	w.Flush()
	if len(w.open) != n || w.openPeak != n {
		t.Fatalf("%d incidents open (peak %d), want %d", len(w.open), w.openPeak, n)
	}
	mu.Lock()
	now = now.Add(w.opt.IncidentWindow + time.Minute)
	mu.Unlock()
	w.forget()
	if len(w.open) != 0 || w.openPeak != 0 {
		t.Errorf("after the window: %d open, room for %d; want none and the map rebuilt", len(w.open), w.openPeak)
	}
}
