package reports

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-filter/gatehouse/internal/lowprio"
)

// TestBackgroundWriterThread: with Options.Background the writer commits
// on one thread of idle priority and checkpoints on another, and both end
// with the writer.
func TestBackgroundWriterThread(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("idle priority is Linux's SCHED_IDLE")
	}
	before := lowprio.Lowered()
	st := openTemp(t)
	w, err := NewWriter(st, Options{Background: true, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	WaitDurable(w, w.RecordSeq(ev(at, "10.0.0.5", "students", "pornography", "adult.example")))
	if w.Written() != 1 {
		t.Fatalf("written %d, want 1", w.Written())
	}
	var added []int
	// The counters too: a thread counts itself once lowered, and at idle
	// priority on a busy machine that can be a while after Lowered sees it.
	waitFor(t, "two threads at idle priority", func() bool {
		added = added[:0]
		for _, tid := range lowprio.Lowered() {
			if !slices.Contains(before, tid) {
				added = append(added, tid)
			}
		}
		return len(added) >= 2 && w.ckptIdle.Load() >= 1 && w.idleThreads.Load() >= 1
	})
	if len(added) != 2 || w.ckptIdle.Load() != 1 || w.idleThreads.Load() != 1 {
		t.Fatalf("threads at idle priority: %v before the writer, %v with it; want two more (committer %d, checkpointer %d)",
			before, lowprio.Lowered(), w.idleThreads.Load(), w.ckptIdle.Load())
	}
	w.Close()
	for _, tid := range added {
		if tid == os.Getpid() {
			continue // the main thread: parked for ever by Go, never reused
		}
		waitFor(t, "the writer's threads ended", func() bool { return !slices.Contains(lowprio.Lowered(), tid) })
	}
}

// TestBackgroundWriterStarved: while threads of normal priority keep every
// CPU busy, the writer's idle thread would hardly run; it notices, moves to
// a thread of normal priority, goes back to idle priority once the CPUs are
// free, and every event is committed. The checkpointer's thread does the
// same, so the WAL keeps being checkpointed.
func TestBackgroundWriterStarved(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("idle priority is Linux's SCHED_IDLE")
	}
	if _, ok := lowprio.RunDelay(); !ok {
		t.Skip("no schedstat here")
	}
	// A P for the writer beside one busy thread per CPU (as serve adds).
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(runtime.NumCPU() + 2))
	_, w := testWriter(t, Options{Background: true})
	at := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	WaitDurable(w, w.RecordSeq(ev(at, "10.0.0.5", "students", "pornography", "adult.example")))
	var stop atomic.Bool
	var busy sync.WaitGroup
	for range runtime.NumCPU() {
		busy.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			for !stop.Load() {
			}
		})
	}
	// Events keep coming; each is waited for as a block answer would be.
	sent := 1
	for i := 0; w.threadMoves.Load() == 0 || w.ckptMoves.Load() == 0; i++ {
		if i == 600 {
			stop.Store(true)
			t.Fatalf("after 60 s of saturated CPUs the writer had not moved off its idle threads (committer %d, checkpointer %d moves)",
				w.threadMoves.Load(), w.ckptMoves.Load())
		}
		e := ev(at.Add(time.Duration(i)*time.Second), "10.0.0.6", "students", "pornography", "adult.example")
		e.Name = "n" + time.Duration(i).String() + ".example"
		w.RecordSeq(e)
		sent++
		time.Sleep(100 * time.Millisecond)
	}
	stop.Store(true)
	busy.Wait()
	// The CPU has room again: commits go back to a thread of idle priority.
	for i := 0; w.idleThreads.Load() < 2 || w.ckptIdle.Load() < 2; i++ {
		if i == 600 {
			t.Fatalf("60 s after the CPUs were freed the writer had not gone back to idle priority (committer %d, checkpointer %d idle threads)",
				w.idleThreads.Load(), w.ckptIdle.Load())
		}
		e := ev(at.Add(time.Hour+time.Duration(i)*time.Second), "10.0.0.7", "students", "pornography", "adult.example")
		e.Name = "m" + time.Duration(i).String() + ".example"
		w.RecordSeq(e)
		sent++
		time.Sleep(100 * time.Millisecond)
	}
	w.Flush()
	if got := w.Written(); got != uint64(sent) {
		t.Fatalf("written %d, want all %d", got, sent)
	}
}

// TestBackgroundWaitedBatchNotIdle: with Options.Background, a batch that
// an answer waits for is committed at the normal priority (not handed to
// the committer's idle thread, where it waited for a free CPU and the held
// answer with it); a batch nobody waits for goes to the committer.
func TestBackgroundWaitedBatchNotIdle(t *testing.T) {
	// No lazy commit of an event before its waiter is registered: only a
	// waiter or Flush commits here.
	st, w := heldOffWriter(t, Options{Background: true})
	at := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	for i := range 20 {
		e := ev(at, "10.0.0.5", "students", "pornography", "adult.example")
		e.Name = fmt.Sprintf("n%d.adult.example", i)
		WaitDurable(w, w.RecordSeq(e))
	}
	if n := w.committed.Load(); n != 0 {
		t.Fatalf("%d of 20 waited-for batches went to the idle committer", n)
	}
	// Repeat counts: no answer waits for them.
	rep := ev(at, "10.0.0.5", "students", "pornography", "n0.adult.example")
	rep.Series, rep.Count = 1, 5
	w.Record(rep)
	w.Flush()
	if w.committed.Load() == 0 {
		t.Fatal("a batch nobody waits for did not go to the committer")
	}
	if c := count(t, st, "SELECT SUM(count) FROM events"); c != 25 {
		t.Fatalf("stored count %d, want 25", c)
	}
}

// TestBackgroundIdleSmallTransactions: on the committer's idle thread a
// batch is committed in transactions of at most idleBatch events, so that
// no single SQLite call (COMMIT writes every page its transaction changed)
// keeps a CPU for milliseconds: Linux may leave a thread that wants the
// CPU waiting behind an idle one until its next tick. Every event is
// stored all the same.
func TestBackgroundIdleSmallTransactions(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("idle priority is Linux's SCHED_IDLE")
	}
	st, w := heldOffWriter(t, Options{Background: true})
	var most atomic.Int64 // the largest transaction, in events
	var fullAt []bool     // per transaction: at synchronous=FULL (the committer's goroutine alone)
	w.mu.Lock()           // the hook is read by the writer's goroutine
	w.onAdd = func(i int) {
		for m := most.Load(); int64(i+1) > m && !most.CompareAndSwap(m, int64(i+1)); m = most.Load() {
		}
		if i == 0 {
			fullAt = append(fullAt, w.full)
		}
	}
	w.mu.Unlock()
	at := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	const n = 1000 // one lazy batch (under lazyBatch), which Flush hands to the committer
	for i := range n {
		// Blocked names: breach events, which a power cut must not lose.
		if w.RecordSeq(ev(at, "10.0.0.6", "students", "pornography", fmt.Sprintf("n%d.adult.example", i))) == 0 {
			t.Fatal("event refused")
		}
	}
	c0 := w.Commits()
	w.Flush()
	if w.idleThreads.Load() == 0 {
		t.Skip("the system refused idle priority")
	}
	if m := most.Load(); m > idleBatch {
		t.Fatalf("a transaction on the idle thread held %d events, want at most %d", m, idleBatch)
	}
	if got, want := w.Commits()-c0, uint64((n+idleBatch-1)/idleBatch); got < want {
		t.Fatalf("%d commits for %d events, want at least %d", got, n, want)
	}
	if c := count(t, st, "SELECT count(*) FROM events"); c != n {
		t.Fatalf("%d events stored, want %d", c, n)
	}
	// One fsync for the batch, as in one transaction: the last one is
	// FULL (it syncs the WAL, the earlier ones with it), the others not.
	if len(fullAt) < 2 || fullAt[0] || !fullAt[len(fullAt)-1] || w.owesFull {
		t.Fatalf("synchronous=FULL per transaction: %v (owed after: %v); want only the last", fullAt, w.owesFull)
	}
}
