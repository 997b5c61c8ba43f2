package reports

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/internal/lograte"
	"github.com/gatehouse-filter/gatehouse/internal/lowprio"
	"github.com/gatehouse-filter/gatehouse/internal/maproom"
)

// Event kinds as stored.
const (
	kindBreach   = 1 // a block or bypass attempt: grouped into incidents
	kindProbe    = 2 // an automatic probe: counted, never reported
	kindQueryLog = 3 // an allowed or rewritten request (full logging)
	kindReport   = 4 // a "report a mistake" form (mistakes.go)
)

// Flags as stored.
const (
	flagRestricted = 1
	flagBypass     = 2
	flagProbe      = 4
)

// Options are the settings the writer, alerter and digests share.
type Options struct {
	IncidentWindow     time.Duration // default 30m
	Samples            int           // default 5
	StaffToHeadteacher bool
	StaffGroups        []string
	AlertSeverity      bl.Severity   // default high
	AlertDedup         time.Duration // default 10m
	MistakeMailEvery   time.Duration // at most one "report a mistake" mail to IT per this (default 5m)
	// ConsoleURL is the console's external base URL (console.url): alerts
	// and digests link to each incident under it. "": the reference only.
	ConsoleURL string
	// PersonWindow: an open incident of an address (or device) in a
	// category becomes a named user's when their event in that category
	// follows within this time (a DNS lookup, then the proxy login: one
	// person's one incident). 0: off.
	PersonWindow time.Duration
	QueueSize    int // default 10000
	MaxBatch     int // default 5000
	// SpillDir holds the spill files written while the database fails;
	// default: the database's directory.
	SpillDir string
	// Background commits the batches no answer waits for on an OS thread
	// of idle CPU priority (Linux SCHED_IDLE, see internal/lowprio), so
	// that a query's thread never waits for their time slice; while that
	// thread is starved (the CPU saturated) they run at the normal
	// priority. A batch an answer waits for is always committed at the
	// normal priority (storeBatch).
	Background bool
	Log        *slog.Logger
	Now        func() time.Time // for tests; default time.Now
}

func (o *Options) fill() {
	if o.IncidentWindow <= 0 {
		o.IncidentWindow = 30 * time.Minute
	}
	if o.Samples <= 0 {
		o.Samples = 5
	}
	if o.AlertSeverity == 0 {
		o.AlertSeverity = bl.SeverityHigh
	}
	if o.AlertDedup <= 0 {
		o.AlertDedup = 10 * time.Minute
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 10_000
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 5000
	}
	o.MaxBatch = min(o.MaxBatch, spillSegment)
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Writer is the event sink: a bounded queue drained by one goroutine that
// inserts events in batched transactions and keeps incidents up to date.
//
// Durability: every queued event gets a sequence number, and a front door
// can wait until its event is durable (IsDurable, AfterDurable) before it
// sends the block answer. Events are durable once committed (a batch that
// holds breach events is committed with synchronous=FULL, so it survives a
// power cut, not only a crash) or, while the database fails, once appended
// and fsynced to a spill file beside it. Events an answer waits for (and
// urgent ones) are committed at once, in a transaction of their own ahead
// of the lazy ones queued before them; the lazy ones (repeat counts, log
// lines, events of a kind already stored) together, within lazyDelay. So
// durability is a watermark (every event up to durable) plus the few held
// events committed above it (early). The writer drains whatever has
// queued while it was committing, so commits group themselves: a lone
// held event is committed at once, a burst in one transaction.
//
// Bounds: low-severity events are dropped (and counted) when QueueSize are
// queued; high and critical ones are queued up to 4 × QueueSize (at least
// 65,536), beyond which they are lost loudly (counted, logged, Healthy false): that needs
// both the database and the spill directory failing. A failed commit is
// retried with exponential backoff (100 ms doubling to 30 s) and reported
// (log, Failures, Healthy); meanwhile batches go to spill files, replayed
// into the database when it takes writes again (also after a restart).
type Writer struct {
	st       *Store
	opt      Options
	conn     *sql.Conn                   // the writer's own connection: short busy timeout, synchronous per batch
	full     bool                        // conn is at synchronous=FULL
	owesFull bool                        // a breach event went in a NORMAL transaction: the next commit is FULL (store)
	dconn    any                         // conn's driver connection, which stmts were prepared on
	stmts    [len(writerSQL)]driver.Stmt // prepared on dconn
	nv       []driver.NamedValue         // one statement's arguments (batchTx.exec)
	boxes    map[string]any              // boxed strings for statements' arguments (box)
	ipKeys   map[netip.Addr]string       // "ip:" and the address (ipKey)
	busy     time.Duration               // conn's busy timeout

	mu      sync.Mutex
	queue   []Event // in sequence order
	spare   []Event
	heldBuf []Event
	seq     uint64 // the sequence number of the last queued event
	waiters []seqWaiter
	urgent  bool // the queue holds an urgent event (urgentEvent)
	// lazySince is when the oldest event in the queue was queued: the
	// lazy ones are committed lazyDelay after it at the latest, however
	// many held commits run meanwhile.
	lazySince time.Time
	// early lists, in order, the events committed ahead of lazy ones
	// queued before them (takeHeld) that durable has not reached yet;
	// earlyN is its length, read without the lock.
	early  []uint64
	earlyN atomic.Int32
	// preempt tells a lazy commit in progress that an answer waits (or an
	// urgent event came): it commits what it has added and leaves the rest
	// for after the held events (commit).
	preempt atomic.Bool
	// onAdd, if set (tests only), is called before each event of a commit.
	onAdd func(i int)
	// lazyAfter is lazyDelay (nanoseconds); tests lengthen it.
	lazyAfter atomic.Int64
	exited    bool // run has returned: nothing more is written
	wake      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	closed    atomic.Bool
	once      sync.Once

	flushReq chan chan struct{}

	durable  atomic.Uint64 // events numbered up to this are committed or spilled
	dropped  atomic.Uint64
	written  atomic.Uint64
	commits  atomic.Uint64
	failures atomic.Uint64
	lost     atomic.Uint64
	// jobs and jobDone hand batches to the committer (Options.Background).
	jobs    chan commitJob
	jobDone chan storeResult
	// threadMoves counts the committer's moves from its idle thread to a
	// normal one; idleThreads the idle threads it took; committed the
	// batches handed to it.
	threadMoves atomic.Uint64
	idleThreads atomic.Uint64
	committed   atomic.Uint64
	spilled     atomic.Int64 // events in spill files not yet in the database
	health      atomic.Pointer[writerHealth]
	lastLoss    atomic.Int64  // unix nanos of the last lost event
	lossLog     lograte.Limit // the "events lost" log line
	// The checkpointer (checkpoint.go): done when it has stopped; its
	// checkpoints run; its idle threads and moves off them; its failure
	// log line.
	ckptDone    chan struct{}
	checkpoints atomic.Uint64
	ckptIdle    atomic.Uint64 // threads of idle priority it took
	ckptMoves   atomic.Uint64 // moves from such a thread to a normal one
	ckptLog     lograte.Limit
	// walTruncations counts the checkpoints that truncated a WAL file
	// grown to walTruncateBytes (checkpoint.go).
	walTruncations atomic.Uint64

	// Alertable, if set, is called (from the writer goroutine) after a
	// batch that holds events at or above the alert severity.
	Alertable func()

	open       map[incKey]*openIncident // incidents still inside the window
	openPeak   int                      // most open incidents at a commit since the map was last rebuilt (maproom.Shrink)
	series     map[uint64]seriesRow     // Event.Series → its stored row
	seriesPeak int                      // most series since the map was last rebuilt (maproom.Shrink)
	// txSeries is batchTx.series, kept from one transaction to the next:
	// a new map each commit was a quarter of the writer's garbage; and
	// txEnded batchTx.ended.
	txSeries map[uint64]seriesRow
	txEnded  []uint64

	// Failure state (writer goroutine only).
	sp           *spill
	dbFailing    bool
	backoff      time.Duration
	retryAt      time.Time
	spillFailing bool
	spillBackoff time.Duration
	spillRetryAt time.Time
}

// Waiter is told when an event it waits for is durable (AfterDurable).
// Durable is called from the writer's goroutine and must not block.
type Waiter interface{ Durable() }

// seqWaiter is a Waiter and the sequence number of the event it waits for.
type seqWaiter struct {
	seq uint64
	w   Waiter
}

// DurableSink is a Sink that tells when an event is durable, so that a
// front door can send a block answer only once its event will survive a
// crash. Writer and Service implement it.
type DurableSink interface {
	Sink
	// RecordSeq queues ev as Record does and returns its sequence number,
	// or 0 when ev was not taken.
	RecordSeq(ev Event) uint64
	// IsDurable reports whether the event numbered seq is durable.
	IsDurable(seq uint64) bool
	// AfterDurable calls w.Durable once the event numbered seq is durable,
	// or once the writer has tried and failed to make it so (the database
	// and the spill directory both failing, or the writer stopped): an
	// answer is never held for ever. It returns false, without calling w,
	// when there is nothing to wait for.
	AfterDurable(seq uint64, w Waiter) bool
}

// WaitDurable blocks until the event numbered seq of sink is durable (see
// AfterDurable); for goroutines that can wait (a TCP or proxy connection).
func WaitDurable(sink DurableSink, seq uint64) {
	if seq == 0 || sink.IsDurable(seq) {
		return
	}
	p := parkers.Get().(*parker)
	if sink.AfterDurable(seq, p) {
		<-p.ch
	}
	parkers.Put(p)
}

type parker struct{ ch chan struct{} }

func (p *parker) Durable() { p.ch <- struct{}{} }

var parkers = sync.Pool{New: func() any { return &parker{ch: make(chan struct{}, 1)} }}

type writerHealth struct {
	since time.Time
	err   string
}

type incKey struct{ who, category string }

type openIncident struct {
	id       int64
	first    int64 // earliest event joined in this run (held events commit ahead of lazy ones)
	last     int64
	count    int64
	severity bl.Severity
	samples  []string
	dirty    bool
}

// seriesRow is the stored row of a collapsed event's repeats.
type seriesRow struct {
	id, incident int64
	used         int64 // unix ms
	minute       int32 // the row's time (ts), in whole minutes since the epoch
}

// Backoff of failed commits and spill writes.
const (
	firstBackoff = 100 * time.Millisecond
	maxBackoff   = 30 * time.Second
	// writerBusyTimeout is how long a commit waits for a lock held by
	// another connection before the batch is spilled instead.
	writerBusyTimeout = time.Second
	// failingBusyTimeout is the busy timeout of a retry while the database
	// fails.
	failingBusyTimeout = 100 * time.Millisecond
)

// NewWriter starts a writer on st.
func NewWriter(st *Store, opt Options) (*Writer, error) {
	opt.fill()
	w := &Writer{st: st, opt: opt, wake: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{}), flushReq: make(chan chan struct{}),
		open: map[incKey]*openIncident{}, series: map[uint64]seriesRow{}}
	// Sequence numbers (and so Event.Series) start from the clock, so that
	// those in a spill file never meet those of a later run.
	w.seq = uint64(time.Now().UnixNano())
	w.durable.Store(w.seq)
	w.lazyAfter.Store(int64(lazyDelay))
	conn, err := st.db.Conn(context.Background())
	if err != nil {
		return nil, err
	}
	w.conn = conn
	if _, err := conn.ExecContext(context.Background(), "PRAGMA wal_autocheckpoint = 0"); err != nil {
		conn.Close()
		return nil, err
	}
	dir := opt.SpillDir
	if dir == "" {
		dir = filepath.Dir(st.path)
	}
	w.sp = &spill{dir: dir, base: filepath.Base(st.path)}
	if err := w.loadOpen(); err != nil {
		conn.Close()
		return nil, err
	}
	if err := w.findSpills(); err != nil {
		conn.Close()
		return nil, err
	}
	w.ckptDone = make(chan struct{})
	go w.checkpointer(&checkpointState{background: opt.Background}, true, checkpointEvery)
	if opt.Background {
		w.jobs, w.jobDone = make(chan commitJob), make(chan storeResult)
		go w.committer(&committerState{}, true)
	}
	go w.run()
	return w, nil
}

// loadOpen reads the incidents still inside the window, so that events
// after a restart join them.
func (w *Writer) loadOpen() error {
	since := ms(w.opt.Now().Add(-w.opt.IncidentWindow))
	rows, err := w.st.db.Query(`SELECT id, who, category, first_ts, last_ts, count, severity, samples FROM incidents WHERE last_ts >= ?`, since)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var o openIncident
		var who, cat, samples string
		var sev int
		if err := rows.Scan(&o.id, &who, &cat, &o.first, &o.last, &o.count, &sev, &samples); err != nil {
			return err
		}
		o.severity = bl.Severity(sev)
		_ = json.Unmarshal([]byte(samples), &o.samples)
		k := incKey{who, cat}
		if cur := w.open[k]; cur == nil || cur.last < o.last {
			w.open[k] = &o
		}
	}
	return rows.Err()
}

// Record queues ev without blocking. It returns false when a low-severity
// event was dropped because the queue was full, when the writer is
// closed, or (loudly) when high-severity events have filled the hard cap.
func (w *Writer) Record(ev Event) bool { return w.RecordSeq(ev) != 0 }

// RecordSeq is Record, returning the event's sequence number (0: not
// taken) for IsDurable and AfterDurable.
func (w *Writer) RecordSeq(ev Event) uint64 {
	if w.closed.Load() {
		return 0
	}
	Redact(&ev)
	w.mu.Lock()
	n := len(w.queue)
	if ev.seriesEndOnly() && (n >= w.opt.QueueSize || w.exited) {
		// Not an event, and it takes no room one needs: the series is
		// then forgotten after ten minutes unused instead.
		w.mu.Unlock()
		return 0
	}
	if n >= w.opt.QueueSize && ev.Severity < bl.SeverityHigh && !ev.Restricted && ev.Action != ActionReport {
		w.mu.Unlock()
		w.dropped.Add(1)
		return 0
	}
	if n >= w.hardCap() || w.exited {
		w.mu.Unlock()
		w.loseLoudly(1, "the event queue is full: the database and the spill directory are both failing")
		return 0
	}
	if n == 0 {
		w.lazySince = time.Now()
	}
	w.seq++
	seq := w.seq
	urgent := urgentEvent(&ev)
	ev.seq, ev.held = seq, urgent
	w.queue = append(w.queue, ev)
	// The writer wakes for the first event of a quiet spell (to start the
	// lazyDelay clock), for an urgent one and when a batch is full; a
	// waiter wakes it at once (AfterDurable).
	wake := n == 0 || n+1 >= lazyBatch || (urgent && !w.urgent)
	w.urgent = w.urgent || urgent
	w.mu.Unlock()
	if urgent {
		w.preempt.Store(true)
	}
	if wake {
		w.poke()
	}
	return seq
}

// Events that no answer waits for (repeat counts, later events of a kind
// already stored, allowed requests with full logging, probes) are
// committed together, lazyDelay after the first of them was queued or
// once lazyBatch are queued, instead of one commit (and a rewrite of the
// same table and index pages in the WAL) each: a flood of repeats made
// 1,500 commits a second, as much writer CPU as the resolver's own. An
// event a block answer waits for is committed at once (AfterDurable wakes
// the writer), and so is an urgent one (urgentEvent), in a transaction of
// their own ahead of the lazy ones queued before them (takeHeld); a lazy
// commit under way when one comes stops after preemptAfter events or more
// and leaves the rest for after it. So a crash loses at most lazyDelay
// more of the lazy ones (README), and a held answer waits for a commit of
// the held events only: when it took the lazy ones with it, the answers
// held in the round after a burst waited 1-15 ms for up to a thousand
// repeat counts and log lines.
const (
	lazyDelay    = 100 * time.Millisecond
	lazyBatch    = 1024
	preemptAfter = 64 // about a millisecond of SQLite work
)

// idleKeep is the largest event buffer (in events; 480 bytes each) the
// writer keeps while idle: three of them (the queue, its spare and the
// held events' buffer), at most ~2.8 MiB.
const idleKeep = 2 * lazyBatch

// urgentEvent reports whether ev is committed at once although no answer
// waits for it: a flag (a watchlisted search, a pinned app, a bad
// certificate: the request itself went through) or a "report a mistake",
// each new, so that a crash straight after it loses nothing.
func urgentEvent(ev *Event) bool {
	return ev.Series == 0 && (ev.Action == "flag" || ev.Action == ActionReport)
}

// due reports whether the queue should be committed now rather than at
// the lazy deadline (w.mu held): held events wait (drain commits them on
// their own), the queue is a full batch, or its deadline has passed.
func (w *Writer) due() bool {
	return len(w.waiters) > 0 || w.urgent || len(w.queue) >= lazyBatch || w.lazyLeft() <= 0
}

// lazyLeft is the time left until the queue's lazy deadline (w.mu held).
func (w *Writer) lazyLeft() time.Duration {
	if len(w.queue) == 0 {
		return time.Duration(w.lazyAfter.Load())
	}
	return time.Duration(w.lazyAfter.Load()) - time.Since(w.lazySince)
}

// hardCap bounds the queue, high and critical events included: 4 ×
// QueueSize, at least 65,536 events (~30 MiB: 480 bytes each, and their
// strings).
func (w *Writer) hardCap() int { return max(4*w.opt.QueueSize, 1<<16) }

func (w *Writer) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// IsDurable reports whether the event numbered seq is committed or spilled.
func (w *Writer) IsDurable(seq uint64) bool {
	if seq <= w.durable.Load() {
		return true
	}
	if w.earlyN.Load() == 0 {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.durableLocked(seq)
}

// durableLocked is IsDurable with w.mu held.
func (w *Writer) durableLocked(seq uint64) bool {
	if seq <= w.durable.Load() {
		return true
	}
	_, ok := slices.BinarySearch(w.early, seq)
	return ok
}

// AfterDurable: see DurableSink.
func (w *Writer) AfterDurable(seq uint64, wt Waiter) bool {
	if seq == 0 || seq <= w.durable.Load() {
		return false
	}
	w.mu.Lock()
	if w.durableLocked(seq) || w.exited {
		w.mu.Unlock()
		return false
	}
	w.waiters = append(w.waiters, seqWaiter{seq, wt})
	w.mu.Unlock()
	w.preempt.Store(true)
	w.poke()
	return true
}

// loseLoudly counts n events that could not be kept, and logs it (at most
// every 10 s).
func (w *Writer) loseLoudly(n int, why string) {
	total := w.lost.Add(uint64(n))
	now := time.Now()
	w.lastLoss.Store(now.UnixNano())
	if w.lossLog.Allow(now, 10*time.Second) {
		w.opt.Log.Error("EVENTS LOST: "+why, "lost_total", total)
	}
}

// Dropped is how many low-severity events were dropped so far.
func (w *Writer) Dropped() uint64 { return w.dropped.Load() }

// Written is how many events were committed so far.
func (w *Writer) Written() uint64 { return w.written.Load() }

// Commits is how many transactions committed events so far.
func (w *Writer) Commits() uint64 { return w.commits.Load() }

// Failures is how many commits (or spill-file replays) failed so far.
func (w *Writer) Failures() uint64 { return w.failures.Load() }

// Lost is how many events (of any severity) could be neither committed,
// spilled nor kept in memory.
func (w *Writer) Lost() uint64 { return w.lost.Load() }

// Spilled is how many events wait in spill files for the database.
func (w *Writer) Spilled() int64 { return w.spilled.Load() }

// Healthy reports whether events are being committed. When not, why says
// since when the database has failed and with what error, how many events
// wait in spill files, or that events were lost in the last 10 minutes.
func (w *Writer) Healthy() (ok bool, why string) {
	if h := w.health.Load(); h != nil {
		return false, fmt.Sprintf("writing events to the database has failed since %s (%s); %d events wait in spill files",
			h.since.UTC().Format(time.RFC3339), h.err, w.spilled.Load())
	}
	if t := w.lastLoss.Load(); t != 0 && time.Since(time.Unix(0, t)) < 10*time.Minute {
		return false, fmt.Sprintf("%d events lost: the database and the spill directory both failed", w.lost.Load())
	}
	return true, ""
}

// Flush returns once every event recorded before the call is committed
// (or spilled, while the database fails).
func (w *Writer) Flush() {
	if w.closed.Load() {
		return
	}
	ch := make(chan struct{})
	select {
	case w.flushReq <- ch:
		<-ch
	case <-w.done:
	}
}

// Close writes everything queued (to the database, else a spill file) and
// stops the writer. Front doors must stop calling Record first; later
// events are refused.
func (w *Writer) Close() {
	w.once.Do(func() {
		w.closed.Store(true)
		close(w.stop)
		<-w.done
		<-w.ckptDone
		_ = w.conn.Raw(func(any) error {
			w.closeStmts()
			return nil
		})
		w.conn.Close()
	})
}

func (w *Writer) run() {
	defer close(w.done)
	purge := time.NewTicker(time.Minute)
	defer purge.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	lazy := time.NewTimer(time.Hour)
	lazy.Stop()
	lazyArmed := false
	for {
		var flushed chan struct{}
		stopping := false
		if w.replayDue() {
			select { // replay between drains, without waiting
			case flushed = <-w.flushReq:
			case <-w.stop:
				stopping = true
			default:
			}
		} else {
			select {
			case <-w.wake:
				w.mu.Lock()
				due, queued, left := w.due(), len(w.queue) > 0, w.lazyLeft()
				w.mu.Unlock()
				if !due && queued && !w.dbFailing && !w.spillFailing {
					if !lazyArmed { // committed at the deadline
						lazy.Reset(left)
						lazyArmed = true
					}
					continue
				}
			case <-lazy.C:
				lazyArmed = false
			case flushed = <-w.flushReq:
			case <-purge.C:
				w.forget()
				continue
			case <-retry.C:
				// The backoff is over: the next commit tries the database;
				// the spill written so far is its probe.
				w.sp.rotate()
			case <-w.stop:
				stopping = true
			}
		}
		if lazyArmed {
			lazy.Stop()
			lazyArmed = false
		}
		w.drain(stopping, flushed != nil)
		w.mu.Lock()
		queued, left := len(w.queue) > 0, w.lazyLeft()
		w.mu.Unlock()
		if queued && !stopping && !w.dbFailing && !w.spillFailing {
			lazy.Reset(max(left, 0))
			lazyArmed = true
		}
		if !stopping && w.replayDue() {
			w.replayOne()
		}
		if w.dbFailing || w.spillFailing {
			at := w.retryAt
			if !w.dbFailing || (w.spillFailing && w.spillRetryAt.Before(at)) {
				at = w.spillRetryAt
			}
			retry.Reset(max(time.Until(at), time.Millisecond))
		}
		if flushed != nil {
			close(flushed)
		}
		if stopping {
			w.mu.Lock()
			w.exited = true
			ws := w.waiters
			w.waiters = nil
			w.mu.Unlock()
			for _, x := range ws {
				x.w.Durable()
			}
			w.sp.rotate()
			if w.jobs != nil {
				close(w.jobs)
			}
			return
		}
	}
}

// commitJob is a batch for the committer.
type commitJob struct {
	batch    []Event
	stopping bool
}

// storeResult is what store did with a batch: left is the part (its tail)
// neither committed nor spilled; preempted tells that it was left because
// held events wait (not for a failure).
type storeResult struct {
	left      []Event
	preempted bool
}

// storeBatch is store. With Options.Background, a batch that no answer
// waits for (repeat counts, later events of a kind already stored) is
// run by the committer, on its thread of idle priority, while the
// writer's goroutine waits. Only the SQLite work moves there: the queue's
// lock, the waiters (which send held DNS answers on the resolver's
// sockets) and everything else the front doors share stay on the writer's
// goroutine, so that a commit preempted while the CPU is busy never holds
// up a query (a lock held by a thread of idle priority is released only
// when the CPU has nothing else to do). A batch an answer waits for
// (held: takeHeld) is stored here, at the normal priority: at idle
// priority its commit waited for a free CPU, and the held block answers
// with it (the slowest in a round after a burst 5.6-52.7 ms, against
// 2.8-17.7 ms this way in the same runs; README, Performance). Any other
// batch may be preempted (commit).
func (w *Writer) storeBatch(batch []Event, stopping, held bool) storeResult {
	if w.jobs == nil || held {
		return w.store(batch, stopping, !held && !stopping, false)
	}
	w.committed.Add(1)
	w.jobs <- commitJob{batch, stopping}
	return <-w.jobDone
}

// committerState is the committer's thread, carried over when it moves
// (moveThread).
type committerState struct {
	idle        bool          // on a thread of idle priority
	since       time.Time     // start of the thread, or of the starvation check
	delay       time.Duration // the thread's run delay at since
	idleRefused bool          // the system refused idle priority: do not ask again
}

// committer runs the batches of storeBatch: on a thread of idle priority
// when idle is true and the system allows it. It returns when the writer
// stops, or once it has started its successor on a thread of the other
// priority (moveThread); the goroutine of an idle thread exits locked to
// it, which ends the thread.
func (w *Writer) committer(st *committerState, idle bool) {
	if st.enter(idle) {
		w.idleThreads.Add(1)
	}
	for job := range w.jobs {
		w.jobDone <- w.store(job.batch, job.stopping, !job.stopping, st.idle && !job.stopping)
		if w.moveThread(st) {
			go w.committer(st, !st.idle)
			return
		}
	}
}

// The committer's threads: a thread of idle priority that waited for a
// CPU more than starvedShare of a window of at least starvedWindow is
// starved (the CPU is saturated), and commits run at the normal priority,
// so that events are stored at the pace they come even then; once that
// thread waits less than calmShare of a window (the CPU has room again),
// commits go back to idle priority. Without the run delay (no schedstat)
// the normal thread is kept for normalFor.
const (
	starvedWindow = time.Second
	starvedShare  = 4  // a quarter
	calmShare     = 20 // 5%
	normalFor     = 5 * time.Second
)

// moveThread reports whether the committer should move to a thread of the
// other priority: to the normal one when the idle thread is starved, back
// to idle priority when the normal one no longer waits for a CPU.
func (w *Writer) moveThread(st *committerState) bool {
	move, waited, el := st.move()
	if move && st.idle {
		w.threadMoves.Add(1)
		w.opt.Log.Info("event writer: the CPU is saturated; committing at normal priority until it has room",
			"waited", waited.Round(time.Millisecond), "of", el.Round(time.Millisecond))
	}
	return move
}

// move is moveThread's decision, for any goroutine that keeps a thread as
// the committer does (the checkpointer too): whether to move, and on an
// idle thread how long it waited for a CPU in how long.
func (st *committerState) move() (move bool, waited, el time.Duration) {
	if st.idleRefused {
		return false, 0, 0
	}
	now := time.Now()
	el = now.Sub(st.since)
	if el < starvedWindow {
		return false, 0, el
	}
	d, ok := lowprio.RunDelay()
	if !ok {
		return !st.idle && el >= normalFor, 0, el
	}
	waited = d - st.delay
	st.since, st.delay = now, d
	if !st.idle {
		return waited < el/calmShare, waited, el
	}
	return waited > el/starvedShare, waited, el
}

// enter takes the calling goroutine's thread for st: at idle priority when
// idle is true and the system allows it, else at the normal priority
// (locked all the same, so that its run delay is the goroutine's). It
// reports whether the thread is at idle priority.
func (st *committerState) enter(idle bool) bool {
	st.idle = idle && !st.idleRefused && lowprio.Enter()
	st.idleRefused = st.idleRefused || (idle && !st.idle)
	if !st.idle && !st.idleRefused {
		// Kept, so that its run delay is this goroutine's (move); the
		// thread ends with the goroutine.
		runtime.LockOSThread()
	}
	st.since = time.Now()
	st.delay, _ = lowprio.RunDelay()
	return st.idle
}

// drain stores what is due, and what arrives meanwhile, then tells the
// waiters: first the held events (takeHeld), then the lazy ones if they
// are due, or when stopping (everything), or with force (Flush: everything
// queued before the call). While the database and the spill directory
// both fail (and neither is due a retry) it only tells the waiters, so
// that answers are not held.
func (w *Writer) drain(stopping, force bool) {
	resume := false // a preempted lazy batch goes on after the held ones
	var ready []seqWaiter
	var target uint64 // force: the last event queued before the call
	for i := 0; ; i++ {
		w.mu.Lock()
		if i == 0 {
			target = w.seq
		}
		if len(w.queue) == 0 && len(w.waiters) == 0 {
			// Idle: keep buffers of a usual batch for the next one (one
			// each lazy commit: regrowing them from nothing was most of
			// what the DNS path's events allocated), not a flood's.
			if cap(w.queue) > idleKeep {
				w.queue = nil
			}
			if cap(w.spare) > idleKeep {
				w.spare = nil
			}
			if cap(w.heldBuf) > idleKeep {
				w.heldBuf = nil
			}
			w.mu.Unlock()
			return
		}
		if !stopping && w.stuck(time.Now()) {
			ws := w.waiters
			w.waiters = nil
			w.mu.Unlock()
			for _, x := range ws {
				x.w.Durable()
			}
			return
		}
		batch := w.takeHeld()
		held := batch != nil
		since := w.lazySince
		if !held {
			if i > 0 && !stopping && !resume && !w.due() && !(force && w.durable.Load() < target) {
				w.mu.Unlock()
				return // lazy events that came meanwhile: run arms the clock
			}
			batch = w.queue
			w.queue, w.urgent, w.lazySince = w.spare, false, time.Time{}
			w.spare = nil
		}
		w.mu.Unlock()
		r := w.storeBatch(batch, stopping, held)
		stored, lost := len(batch)-len(r.left), 0
		if len(r.left) > 0 && stopping && !r.preempted {
			lost, r.left = countEvents(r.left), nil
		}
		w.mu.Lock()
		var low, over int
		switch {
		case r.preempted:
			w.putBack(batch, r.left)
		case len(r.left) > 0:
			low, over = w.requeueLocked(r.left)
		}
		if len(r.left) > 0 && (w.lazySince.IsZero() || since.Before(w.lazySince)) {
			w.lazySince = since // the deadline of the events put back
		}
		if held {
			for i := range stored {
				j, _ := slices.BinarySearch(w.early, batch[i].seq)
				w.early = slices.Insert(w.early, j, batch[i].seq)
			}
		}
		ready = w.advance(ready[:0])
		if len(r.left) > 0 && !r.preempted {
			// Tried and failed (both the database and the spill file):
			// the answers go now rather than be held until a retry works.
			ready = append(ready, w.waiters...)
			clear(w.waiters)
			w.waiters = w.waiters[:0]
		}
		w.mu.Unlock()
		if lost > 0 {
			w.loseLoudly(lost, "at shutdown the database and the spill directory both refused them")
		}
		w.dropped.Add(uint64(low))
		if over > 0 {
			w.loseLoudly(over, "the event queue is full: the database and the spill directory are both failing")
		}
		for _, x := range ready {
			x.w.Durable()
		}
		clear(ready)
		// Reuse a well-filled buffer for the next drain.
		switch {
		case held:
			clear(batch)
			if cap(batch) <= idleKeep {
				w.heldBuf = batch[:0]
			}
		case r.preempted: // batch's buffer is the queue now
		case len(r.left) == 0 && (cap(batch) <= idleKeep || len(batch) >= cap(batch)/4 && cap(batch) <= w.opt.QueueSize):
			// Any buffer up to idleKeep, a larger one while it is well
			// used: a small batch taken from a grown buffer dropped it,
			// and the queue regrew from nothing (in the round after a
			// burst, a quarter of what the process allocated).
			clear(batch) // drop the strings
			w.spare = batch[:0]
		}
		if !held {
			resume = r.preempted
		}
		if len(r.left) > 0 && !r.preempted {
			return // wait for the retry timer
		}
	}
}

// takeHeld moves the events an answer waits for, and urgent ones, out of
// the queue, in order, for a transaction of their own (w.mu held); nil if
// there are none. A held answer then waits for its own event's commit,
// not for those of the lazy events queued before it. It also clears
// preempt: a lazy commit that starts after it is preempted only by
// waiters that come later.
func (w *Writer) takeHeld() []Event {
	w.preempt.Store(false)
	q := w.queue
	marked := 0
	for _, x := range w.waiters {
		j := sort.Search(len(q), func(i int) bool { return q[i].seq >= x.seq })
		if j < len(q) && q[j].seq == x.seq && !q[j].held {
			q[j].held = true
			marked++
		}
	}
	if marked == 0 && !w.urgent {
		return nil
	}
	hb, k := w.heldBuf[:0], 0
	for i := range q {
		if q[i].held {
			hb = append(hb, q[i])
			continue
		}
		if k != i {
			q[k] = q[i]
		}
		k++
	}
	clear(q[k:])
	w.queue, w.heldBuf, w.urgent = q[:k], nil, false
	return hb
}

// putBack puts left, the tail of batch that a preempted commit did not
// reach, back at the head of the queue, in batch's buffer (w.mu held):
// events queued since batch was taken all come after it.
func (w *Writer) putBack(batch, left []Event) {
	n := copy(batch, left)
	clear(batch[n:])
	q := append(batch[:n], w.queue...)
	clear(w.queue)
	if w.spare == nil && cap(w.queue) <= w.opt.QueueSize {
		w.spare = w.queue[:0]
	}
	w.queue = q
}

// advance moves durable up to the event before the first still queued
// (on the writer's goroutine, between commits, every event not yet
// committed or spilled is in the queue), forgets the early events it
// passed, and appends to ready the waiters whose event is durable (w.mu
// held).
func (w *Writer) advance(ready []seqWaiter) []seqWaiter {
	to := w.seq
	if len(w.queue) > 0 {
		to = w.queue[0].seq - 1
	}
	if to > w.durable.Load() {
		w.durable.Store(to)
	}
	to = w.durable.Load()
	k := 0
	for k < len(w.early) && w.early[k] <= to {
		k++
	}
	w.early = slices.Delete(w.early, 0, k)
	w.earlyN.Store(int32(len(w.early)))
	j := 0
	for _, x := range w.waiters {
		if w.durableLocked(x.seq) {
			ready = append(ready, x)
			continue
		}
		w.waiters[j] = x
		j++
	}
	clear(w.waiters[j:])
	w.waiters = w.waiters[:j]
	return ready
}

// requeueLocked merges rest, which could be neither committed nor
// spilled, back into the queue in sequence order for the next attempt,
// within the hard cap: low-severity events go first (counted as dropped,
// low), then the newest (lost, over; to be reported loudly). w.mu held.
func (w *Writer) requeueLocked(rest []Event) (low, over int) {
	q := make([]Event, 0, min(len(rest)+len(w.queue), w.hardCap()))
	excess := len(rest) + len(w.queue) - w.hardCap()
	i, j := 0, 0
	for i < len(rest) || j < len(w.queue) {
		var ev *Event
		if j == len(w.queue) || (i < len(rest) && rest[i].seq < w.queue[j].seq) {
			ev = &rest[i]
			i++
		} else {
			ev = &w.queue[j]
			j++
		}
		switch {
		case excess > 0 && ev.seriesEndOnly():
			excess-- // not an event: its series is forgotten later instead
		case excess > 0 && ev.Severity < bl.SeverityHigh && !ev.Restricted && ev.Action != ActionReport:
			excess--
			low++
		case len(q) >= w.hardCap():
			over++
		default:
			q = append(q, *ev)
		}
	}
	w.queue = q
	w.urgent = slices.ContainsFunc(q, func(ev Event) bool { return ev.held })
	return low, over
}

// stuck reports whether neither the database nor the spill file may be
// tried now (both failing, neither due a retry).
func (w *Writer) stuck(now time.Time) bool {
	return w.dbFailing && now.Before(w.retryAt) && w.spillFailing && now.Before(w.spillRetryAt)
}

// idleBatch is the most events the committer commits in one transaction
// on its thread of idle priority, and between two of them it sleeps for a
// moment (lowprio.Pause). Linux does not always take the CPU from an idle
// thread when another wants it: after a burst the DNS resolver's threads
// and the load tool waited 2-4 ms, up to a scheduler tick, while the
// committer wrote a transaction of hundreds of repeat counts (most of it
// in one call, SQLite's COMMIT writing every changed page), and the
// resolver's p99 in the round after a burst was up to twice bare
// miekg/dns's. A transaction of idleBatch events writes at most a few
// dozen pages, and the pause hands the CPU to whatever waits for it.
const idleBatch = 64

// store commits batch to the database in MaxBatch transactions (if small,
// on the committer's idle thread when not stopping: idleBatch ones with a
// pause between them) or, while the database fails, appends it to a spill
// file. A preemptible batch stops early when held events wait (commit; if
// small, between its transactions). It returns what it left. Its calls
// never overlap (storeBatch waits for the committer), so it alone uses
// owesFull.
func (w *Writer) store(batch []Event, stopping, preemptible, small bool) storeResult {
	now := time.Now()
	if !w.dbFailing || !now.Before(w.retryAt) || stopping {
		for first := true; len(batch) > 0; first = false {
			n := min(len(batch), w.opt.MaxBatch)
			if small {
				if !first {
					if preemptible && w.preempt.Load() {
						return storeResult{batch, true} // held events wait: they go first
					}
					lowprio.Pause()
				}
				n = min(n, idleBatch)
			}
			full := w.owesFull || needsFull(batch[:n])
			if full && n < len(batch) && small {
				// Not the batch's last transaction: the next FULL commit
				// (its last, or the held events' that cut in) syncs the
				// WAL and this one with it, one fsync a batch as before.
				w.owesFull, full = true, false
			}
			k, err := w.commit(batch[:n], preemptible, full)
			if err != nil {
				w.dbFailed(err)
				break
			}
			w.dbOK()
			batch = batch[k:]
			if k < n {
				return storeResult{batch, true}
			}
		}
		if len(batch) == 0 {
			return storeResult{}
		}
	}
	if !w.spillFailing || !now.Before(w.spillRetryAt) || stopping {
		// The end of a series is not kept through a failure: a repeat
		// count replayed later starts a row of its own if need be.
		batch = withoutSeriesEnds(batch)
		if len(batch) == 0 {
			return storeResult{}
		}
		if err := w.sp.append(batch); err != nil {
			w.spillFailing = true
			w.spillBackoff = nextBackoff(w.spillBackoff)
			w.spillRetryAt = time.Now().Add(w.spillBackoff)
			w.opt.Log.Error("writing events to the spill file failed too; they are held in memory", "dir", w.sp.dir, "events", len(batch), "err", err)
			w.setHealth(err)
			return storeResult{left: batch}
		}
		w.spilled.Add(int64(len(batch)))
		w.spillFailing, w.spillBackoff = false, 0
		return storeResult{}
	}
	return storeResult{left: batch}
}

// countEvents is len(evs) less the ends of series alone (not events).
func countEvents(evs []Event) int {
	n := len(evs)
	for i := range evs {
		if evs[i].seriesEndOnly() {
			n--
		}
	}
	return n
}

// withoutSeriesEnds returns evs, or if it holds ends of series alone a
// copy without them (the caller still reads evs).
func withoutSeriesEnds(evs []Event) []Event {
	n := countEvents(evs)
	if n == len(evs) {
		return evs
	}
	out := make([]Event, 0, n)
	for i := range evs {
		if !evs[i].seriesEndOnly() {
			out = append(out, evs[i])
		}
	}
	return out
}

func nextBackoff(d time.Duration) time.Duration {
	if d <= 0 {
		return firstBackoff
	}
	return min(2*d, maxBackoff)
}

func (w *Writer) dbFailed(err error) {
	w.failures.Add(1)
	w.dbFailing = true
	w.backoff = nextBackoff(w.backoff)
	w.retryAt = time.Now().Add(w.backoff)
	w.setHealth(err)
	w.opt.Log.Error("WRITING EVENTS FAILED: they go to spill files until the database takes them", "retry_in", w.backoff, "err", err)
	w.reload()
}

func (w *Writer) setHealth(err error) {
	if h := w.health.Load(); h != nil {
		w.health.Store(&writerHealth{since: h.since, err: err.Error()})
		return
	}
	w.health.Store(&writerHealth{since: time.Now(), err: err.Error()})
}

func (w *Writer) dbOK() {
	if !w.dbFailing {
		return
	}
	w.dbFailing, w.backoff = false, 0
	w.health.Store(nil)
	w.sp.rotate()
	w.opt.Log.Info("writing events works again; spilled events are being replayed", "spilled", w.spilled.Load())
}

// commit writes a batch in one transaction (synchronous=FULL if full) and
// returns how many of its events that took: all, unless it is preemptible
// and held events came (preempt) once it had added preemptAfter.
func (w *Writer) commit(batch []Event, preemptible, full bool) (int, error) {
	n := len(batch)
	err := w.inTx(full, func(b *batchTx) error {
		for i := range batch {
			if preemptible && i >= preemptAfter && w.preempt.Load() {
				n = i
				break
			}
			if w.onAdd != nil {
				w.onAdd(i)
			}
			if err := w.add(b, &batch[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if full {
		w.owesFull = false
	}
	w.written.Add(uint64(countEvents(batch[:n])))
	w.commits.Add(1)
	return n, nil
}

// needsFull reports whether batch holds a new breach event, committed
// with synchronous=FULL so that it survives a power cut. Batches of
// query-log and probe events and of repeat counts (Series) keep NORMAL:
// they survive a crash, and reach the disk with the next FULL commit or
// checkpoint (an fsync per half-second count would cost the resolver a
// quarter of its CPU under a flood of repeats).
func needsFull(batch []Event) bool {
	for i := range batch {
		ev := &batch[i]
		if !ev.Probe && ev.Series == 0 && (ev.Action == "block" || ev.Action == "flag" || ev.Bypass || ev.Restricted) {
			return true
		}
	}
	return false
}

// reload forgets the in-memory incidents after a failed transaction (their
// ids may have been rolled back) and reads them again.
func (w *Writer) reload() {
	w.open, w.openPeak = map[incKey]*openIncident{}, 0
	if err := w.loadOpen(); err != nil {
		w.opt.Log.Error("reading open incidents", "err", err)
	}
}

// forget drops incidents whose window has ended and series unused for 10
// minutes (a later repeat then starts a new row: counts stay exact; see
// also maxSeries).
func (w *Writer) forget() {
	cut := ms(w.opt.Now().Add(-w.opt.IncidentWindow))
	for k, o := range w.open {
		if o.last < cut && !o.dirty {
			delete(w.open, k)
		}
	}
	w.open = maproom.Shrink(w.open, &w.openPeak)
	old := ms(time.Now().Add(-10 * time.Minute))
	for k, r := range w.series {
		if r.used < old {
			delete(w.series, k)
		}
	}
	w.series = maproom.Shrink(w.series, &w.seriesPeak)
}

const insertEvent = `INSERT INTO events (ts, kind, source, protocol, client, device, user, grp, name, qtype, url, search,
	method, status, bytes, action, reason, category, severity, route, list, entry, flags, count, incident_id, ref, note,
	id_source, display, year_group, class)
	VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`

// batchTx is one transaction of the writer, on its connection's driver
// connection (inTx).
type batchTx struct {
	w       *Writer
	dc      any // the driver connection, for the length of inTx only
	tx      driver.Tx
	touched []*openIncident
	series  map[uint64]seriesRow // rows inserted in this transaction
	ended   []uint64             // series whose last event (SeriesEnd) is in this transaction
	alert   bool
}

// inTx runs f in one transaction and commits it (finish), then calls
// Alertable if the transaction held an event to alert on (or a "report a
// mistake"); on an error the transaction is rolled back and the in-memory
// incidents are re-read by the caller's dbFailed. The transaction runs on the driver connection
// (database/sql's Conn.Raw), so that each statement reuses one argument
// slice (exec): through database/sql every Exec built a slice of its
// arguments (31 for an event, 1.3 KiB) and a result wrapper, a third of
// what the process allocated in the DNS round after a burst.
func (w *Writer) inTx(full bool, f func(b *batchTx) error) error {
	if err := w.pragmas(full); err != nil {
		return err
	}
	var b *batchTx
	err := w.conn.Raw(func(dc any) error {
		if dc != w.dconn { // statements are prepared again on another connection
			w.closeStmts()
			w.dconn = dc
		}
		bt, ok := dc.(driver.ConnBeginTx)
		if !ok {
			return fmt.Errorf("the database driver %T cannot begin a transaction", dc)
		}
		tx, err := bt.BeginTx(context.Background(), driver.TxOptions{})
		if err != nil {
			return err
		}
		b = &batchTx{w: w, dc: dc, tx: tx, ended: w.txEnded[:0]}
		if err := f(b); err != nil {
			tx.Rollback()
			return err
		}
		return w.finish(b)
	})
	if err == nil && b.alert && w.Alertable != nil {
		w.Alertable()
	}
	return err
}

// pragmas sets the connection's busy timeout (short while the database
// fails: a probe must not hold the queue up) and synchronous mode.
func (w *Writer) pragmas(full bool) error {
	ctx := context.Background()
	busy := writerBusyTimeout
	if w.dbFailing {
		busy = failingBusyTimeout
	}
	if busy != w.busy {
		if _, err := w.conn.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", busy.Milliseconds())); err != nil {
			return err
		}
		w.busy = busy
	}
	if full != w.full {
		mode := "NORMAL"
		if full {
			mode = "FULL"
		}
		if _, err := w.conn.ExecContext(ctx, "PRAGMA synchronous = "+mode); err != nil {
			return err
		}
		w.full = full
	}
	return nil
}

// The writer's statements, prepared once on its connection.
const (
	stmtInsert = iota
	stmtNewIncident
	stmtBump
	stmtIncident
)

var writerSQL = [...]string{
	stmtInsert: insertEvent,
	// Numbered past every incident there has been (migration 11's
	// incident_floor), never one retention deleted.
	stmtNewIncident: `INSERT INTO incidents (id, who, client, device, user, grp, category, severity, route, restricted, bypass,
		first_ts, last_ts, count, samples, id_source, display, year_group, class) VALUES (
		max(COALESCE((SELECT max(id) FROM incidents), 0), CAST((SELECT value FROM meta WHERE key = 'incident_floor') AS INTEGER)) + 1,
		?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
	stmtBump:     `UPDATE events SET count = count + ? WHERE id = ?`,
	stmtIncident: `UPDATE incidents SET first_ts = min(first_ts, ?), last_ts = ?, count = ?, severity = ?, samples = ? WHERE id = ?`,
}

// exec runs the writer's statement i in b, prepared once on the driver
// connection (again on another one: inTx).
func (b *batchTx) exec(i int, args ...any) (driver.Result, error) {
	w := b.w
	if w.stmts[i] == nil {
		pc, ok := b.dc.(driver.ConnPrepareContext)
		if !ok {
			return nil, fmt.Errorf("the database driver %T cannot prepare statements", b.dc)
		}
		st, err := pc.PrepareContext(context.Background(), writerSQL[i])
		if err != nil {
			return nil, err
		}
		w.stmts[i] = st
	}
	st, ok := w.stmts[i].(driver.StmtExecContext)
	if !ok {
		return nil, fmt.Errorf("the database driver's statement %T cannot execute with a context", w.stmts[i])
	}
	nv := w.namedValues(args)
	defer clear(nv) // drop the strings
	return st.ExecContext(context.Background(), nv)
}

// execSQL runs query, a statement the writer runs rarely (not kept
// prepared), in b.
func (b *batchTx) execSQL(query string, args ...any) (driver.Result, error) {
	ec, ok := b.dc.(driver.ExecerContext)
	if !ok {
		return nil, fmt.Errorf("the database driver %T cannot execute statements", b.dc)
	}
	nv := b.w.namedValues(args)
	defer clear(nv)
	return ec.ExecContext(context.Background(), query, nv)
}

// box returns s as a statement argument, the same interface value each
// time for the same string: putting a string in an interface allocates,
// and a stored event repeats a few strings from a small set (its source,
// protocol, query type, group, action, reason, category, route, list and
// identity source) in every row, thousands of rows a second after a burst.
// Only those go through box, never a name, URL or person; at most boxMax
// are kept, then the set starts again. Like nv, only the writer's
// transaction uses it.
func (w *Writer) box(s string) any {
	if s == "" {
		return s // no allocation
	}
	if v, ok := w.boxes[s]; ok {
		return v
	}
	if w.boxes == nil || len(w.boxes) >= boxMax {
		w.boxes = make(map[string]any)
	}
	v := any(s)
	w.boxes[s] = v
	return v
}

const boxMax = 1024

// namedValues puts args in the writer's argument slice as the driver takes
// them (int as int64, sql.NullInt64 as int64 or nil: what database/sql's
// default converter did).
func (w *Writer) namedValues(args []any) []driver.NamedValue {
	if cap(w.nv) < len(args) {
		w.nv = make([]driver.NamedValue, len(args))
	}
	nv := w.nv[:len(args)]
	for i, a := range args {
		switch v := a.(type) {
		case int:
			a = int64(v)
		case sql.NullInt64:
			a = nil
			if v.Valid {
				a = v.Int64
			}
		}
		nv[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
	}
	return nv
}

// closeStmts closes the prepared statements (on their connection: inside
// Conn.Raw, or once it is gone).
func (w *Writer) closeStmts() {
	for i, st := range w.stmts {
		if st != nil {
			st.Close()
			w.stmts[i] = nil
		}
	}
}

// add writes ev in b: a new row, or for a later event of a series, its
// count added to the series' row.
func (w *Writer) add(b *batchTx, ev *Event) error {
	if ev.Series != 0 && ev.SeriesEnd {
		b.ended = append(b.ended, ev.Series) // forgotten once committed (finish)
		if ev.seriesEndOnly() {
			return nil
		}
	}
	kind, route, sev := w.classify(ev)
	if kind == kindReport {
		b.alert = true // mailed to IT by the alerter (mistakes.go)
	}
	ts := ms(ev.Time)
	if ev.Time.IsZero() {
		ts = ms(w.opt.Now())
	}
	n := int64(max(ev.Count, 1))
	var flags int
	if ev.Restricted {
		flags |= flagRestricted
	}
	if ev.Bypass {
		flags |= flagBypass
	}
	if ev.Probe {
		flags |= flagProbe
	}
	var incID sql.NullInt64
	ipk := w.ipKey(ev.Client)
	client := ipk[len("ip:"):] // clientStr(ev)
	if kind == kindBreach && route != bl.RouteNone {
		if sev >= w.opt.AlertSeverity {
			b.alert = true
		}
		who := whoKey(ev, ipk)
		k := incKey{who, ev.Category}
		if ev.User != "" && w.opt.PersonWindow > 0 {
			if err := w.claim(b, ev, k, route, ts); err != nil {
				return err
			}
		}
		o := w.open[k]
		if o != nil && ts-o.last > w.opt.IncidentWindow.Milliseconds() {
			o = nil
		}
		sample := sampleOf(ev)
		if o == nil {
			var samples []string
			if sample != "" {
				samples = []string{sample}
			}
			sj, _ := json.Marshal(nonNil(samples))
			res, err := b.exec(stmtNewIncident, who, client, ev.Device, ev.User, ev.Group, ev.Category, int(sev), string(route),
				b2i(ev.Restricted), b2i(ev.Bypass), ts, ts, n, string(sj), ev.IDSource, ev.Display, ev.Year, ev.Class)
			if err != nil {
				return err
			}
			id, err := res.LastInsertId()
			if err != nil {
				return err
			}
			o = &openIncident{id: id, first: ts, last: ts, count: n, severity: sev, samples: samples}
			w.open[k] = o
		} else {
			o.count += n
			o.first, o.last = min(o.first, ts), max(o.last, ts)
			o.severity = max(o.severity, sev)
			o.samples = addSample(o.samples, sample, w.opt.Samples)
			if !o.dirty {
				o.dirty = true
				b.touched = append(b.touched, o)
			}
		}
		incID = sql.NullInt64{Int64: o.id, Valid: true}
	}
	if ev.Series != 0 {
		r, ok := b.series[ev.Series]
		if !ok {
			r, ok = w.series[ev.Series]
		}
		// A row holds the counts of one minute (of the events' time): a
		// count for a later minute starts a row of its own, so a digest
		// (its periods end at a schedule's minute, read a few seconds
		// after) never has a row it read grow afterwards with attempts
		// made after its end, which the next digest, reading rows from
		// its start on, would not count either.
		if ok && r.incident == incID.Int64 && int64(r.minute) == ts/60_000 {
			res, err := b.exec(stmtBump, n, r.id)
			if err != nil {
				return err
			}
			if k, _ := res.RowsAffected(); k == 1 {
				b.setSeries(ev.Series, r)
				return nil
			}
		}
	}
	res, err := b.exec(stmtInsert, ts, kind, w.box(ev.Source), w.box(ev.Protocol), client, ev.Device, ev.User,
		w.box(ev.Group), ev.Name, w.box(ev.QType), ev.URL, ev.SearchTerm, ev.Method, ev.Status, ev.Bytes,
		w.box(ev.Action), w.box(ev.Reason), w.box(ev.Category), int(sev), w.box(string(route)), w.box(ev.List),
		ev.Entry, flags, n, incID, ev.Ref, ev.Note, w.box(ev.IDSource), ev.Display, ev.Year, ev.Class)
	if err != nil {
		return err
	}
	if ev.Series != 0 {
		id, err := res.LastInsertId()
		if err != nil {
			return err
		}
		b.setSeries(ev.Series, seriesRow{id: id, incident: incID.Int64, minute: int32(ts / 60_000)})
	}
	return nil
}

func (b *batchTx) setSeries(k uint64, r seriesRow) {
	if b.series == nil {
		w := b.w
		if w.txSeries == nil || len(w.txSeries) > maxKeptSeries {
			w.txSeries = map[uint64]seriesRow{} // not one a burst grew
		}
		clear(w.txSeries)
		b.series = w.txSeries
	}
	b.series[k] = r
}

// maxKeptSeries: a transaction's series map that held more is not kept
// for the next one (clearing a map costs its size).
const maxKeptSeries = 4096

// finish writes the touched incidents and commits. On failure the
// transaction is rolled back and the in-memory incidents are re-read by
// the caller's dbFailed.
func (w *Writer) finish(b *batchTx) error {
	for _, o := range b.touched {
		sj, _ := json.Marshal(nonNil(o.samples))
		if _, err := b.exec(stmtIncident, o.first, o.last, o.count, int(o.severity), string(sj), o.id); err != nil {
			b.tx.Rollback()
			return err
		}
	}
	if err := b.tx.Commit(); err != nil { // rolled back by the driver
		return err
	}
	for _, o := range b.touched {
		o.dirty = false
	}
	now := ms(time.Now())
	for k, r := range b.series {
		r.used = now
		w.series[k] = r
	}
	for _, k := range b.ended {
		delete(w.series, k)
	}
	if cap(b.ended) <= maxKeptSeries {
		w.txEnded = b.ended[:0]
	}
	w.seriesPeak = max(w.seriesPeak, len(w.series))
	if len(w.series) > maxSeries {
		w.trimSeries(now, b.series)
	}
	w.series = maproom.Shrink(w.series, &w.seriesPeak)
	w.openPeak = max(w.openPeak, len(w.open))
	if len(w.open) > maxOpen {
		w.trimOpen()
	}
	return nil
}

// maxOpen bounds the incidents the writer holds open in memory (about
// 200 bytes each plus their samples): blocked requests from ever new
// client addresses (a UDP query's source can be any) open one each, and
// must not grow them without limit within the incident window. Past it,
// trimOpen forgets those whose window has ended, then any, down to three
// quarters. A later event of a forgotten incident opens a new one: it is
// stored and reported all the same.
var maxOpen = 65_536

func (w *Writer) trimOpen() {
	keep := maxOpen * 3 / 4
	cut := ms(w.opt.Now().Add(-w.opt.IncidentWindow))
	for pass := range 2 {
		for k, o := range w.open {
			if len(w.open) <= keep {
				return
			}
			if o.dirty { // not written yet (none is, after a commit)
				continue
			}
			if pass == 1 || o.last < cut {
				delete(w.open, k)
			}
		}
	}
}

// maxSeries bounds the series the writer remembers (about 48 bytes each,
// so about 3 MiB): a flood of distinct blocked names, each repeated, adds
// one a name. Past it, trimSeries forgets those unused for a minute, then
// any but those of the transaction just committed (the likeliest to
// repeat again), then any, down to three quarters. A later repeat of a
// forgotten series starts a new row: its count is stored all the same.
var maxSeries = 65_536

func (w *Writer) trimSeries(now int64, current map[uint64]seriesRow) {
	keep := maxSeries * 3 / 4
	idle := now - time.Minute.Milliseconds()
	for pass := range 3 {
		for k, r := range w.series {
			if len(w.series) <= keep {
				return
			}
			_, cur := current[k]
			if pass == 2 || !cur && (pass == 1 || r.used < idle) {
				delete(w.series, k)
			}
		}
	}
}

// classify works out an event's kind, report route and severity.
func (w *Writer) classify(ev *Event) (kind int, route bl.Route, sev bl.Severity) {
	sev = ev.Severity
	cat, catErr := bl.ParseCategory(ev.Category)
	switch {
	case ev.Action == ActionReport:
		return kindReport, bl.RouteIT, sev
	case ev.Probe || (catErr == nil && cat.Info().Kind == bl.KindProbe):
		return kindProbe, bl.RouteNone, sev
	case ev.Action == "block" || ev.Action == "flag" || ev.Bypass || ev.Restricted:
		kind = kindBreach
	default:
		// Allowed and rewritten requests (full logging) and the proxy's
		// "report a mistake" forms are stored, never reported.
		return kindQueryLog, "", sev
	}
	route = ev.Route
	if route == "" {
		route = bl.RouteDSL
		if catErr == nil {
			route = cat.Info().Route
		}
	}
	if ev.Restricted || (catErr == nil && cat.Restricted()) {
		sev = bl.SeverityCritical
		if route == bl.RouteNone {
			route = bl.RouteDSL
		}
	}
	return kind, staffRule(route, ev.Group, w.opt.StaffToHeadteacher, w.opt.StaffGroups), sev
}

// claim makes the open incident of ev's device or address in ev's
// category, last seen within PersonWindow of ts, the incident of ev's user
// (key k), unless the user has one open already: the lookup a moment
// before the login was the same person. The incident takes the person's
// route (route, from ev's group): a pupil on a PC in a staff range is the
// DSL's concern, not the headteacher's, and the reverse. When the route
// changes, the incident is alerted again as a new one, to the role it now
// goes to (an alert already sent went to the other).
func (w *Writer) claim(b *batchTx, ev *Event, k incKey, route bl.Route, ts int64) error {
	win := w.opt.PersonWindow.Milliseconds()
	if o := w.open[k]; o != nil && ts-o.last <= w.opt.IncidentWindow.Milliseconds() {
		return nil
	}
	for _, from := range []string{"device:" + ev.Device, "ip:" + clientStr(ev)} {
		if from == "device:" || from == "ip:" {
			continue
		}
		ak := incKey{from, ev.Category}
		o := w.open[ak]
		if o == nil || ts-o.last > win || o.last-ts > win {
			continue
		}
		// SET's right-hand sides read the row as it was: route there is
		// the old route.
		if _, err := b.execSQL(`UPDATE incidents SET who = ?, user = ?, device = ?, grp = ?, id_source = ?, display = ?,
			year_group = ?, class = ?, route = ?,
			alerted_count = CASE WHEN route = ? THEN alerted_count ELSE 0 END,
			last_alert_ts = CASE WHEN route = ? THEN last_alert_ts ELSE 0 END WHERE id = ?`,
			k.who, ev.User, ev.Device, ev.Group, ev.IDSource, ev.Display, ev.Year, ev.Class, string(route),
			string(route), string(route), o.id); err != nil {
			return err
		}
		delete(w.open, ak)
		w.open[k] = o
		return nil
	}
	return nil
}

// whoKey names the client: the user if known, else the device, else the
// IP address; ipk is w.ipKey(ev.Client).
func whoKey(ev *Event, ipk string) string {
	switch {
	case ev.User != "":
		return "user:" + ev.User
	case ev.Device != "":
		return "device:" + ev.Device
	}
	return ipk
}

// ipKey returns "ip:" and a's text (clientStr), the same string for the
// same address: most stored events add a repeat count to their client's
// open incident, which is looked up by this key, and making it anew was
// two of the few allocations such an event costs. At most ipKeysMax
// addresses are kept, then the set starts again. Like nv, only the
// writer's transaction uses it.
func (w *Writer) ipKey(a netip.Addr) string {
	if !a.IsValid() {
		return "ip:"
	}
	if k, ok := w.ipKeys[a]; ok {
		return k
	}
	if w.ipKeys == nil || len(w.ipKeys) >= ipKeysMax {
		w.ipKeys = make(map[netip.Addr]string)
	}
	k := "ip:" + a.String()
	w.ipKeys[a] = k
	return k
}

const ipKeysMax = 4096

func clientStr(ev *Event) string {
	if !ev.Client.IsValid() {
		return ""
	}
	return ev.Client.String()
}

// searchedFor words a search for alerts and digests: searched for “term”
// on Google.
func searchedFor(term, engine string) string {
	s := searchedPrefix + term + "\u201d"
	if engine != "" {
		s += " on " + engine
	}
	return s
}

// addSample adds sample to an incident's samples, at most n of them.
// What a person searched for or read (a search term, the phrases of a
// page the content check flagged) says more than the names a blocked page
// asked for: once the samples are full, it takes the place of the latest
// of those, so a search made after five blocked names still reaches the
// DSL's alert and digest (TestSearchTermNotCrowdedOutOfSamples).
func addSample(samples []string, sample string, n int) []string {
	if sample == "" || slices.Contains(samples, sample) {
		return samples
	}
	if len(samples) < n {
		return append(samples, sample)
	}
	if !tellingSample(sample) {
		return samples
	}
	for i := len(samples) - 1; i >= 0; i-- {
		if !tellingSample(samples[i]) {
			return append(slices.Delete(samples, i, i+1), sample)
		}
	}
	return samples
}

// tellingSample reports whether a sample (as sampleOf words it) is a
// search or a page's flagged phrases rather than a name or URL.
func tellingSample(s string) bool {
	return strings.HasPrefix(s, searchedPrefix) || strings.HasPrefix(s, readPrefix)
}

const (
	searchedPrefix = "searched for \u201c"
	readPrefix     = "read a page with \u201c"
)

// sampleOf is what an incident keeps as an example: the search term, else
// the URL, else the name (for a DNS tunnel, saying so). Nothing for the
// restricted tier.
func sampleOf(ev *Event) string {
	if ev.Restricted {
		return ""
	}
	if cat, err := bl.ParseCategory(ev.Category); err == nil && cat.Restricted() {
		return ""
	}
	switch {
	case ev.SearchTerm != "":
		return searchedFor(ev.SearchTerm, ev.SearchEngine)
	case ev.Reason == "content" && ev.Entry != "" && ev.URL != "":
		// The real-time content check: the phrases it found (Entry).
		return readPrefix + shorten(ev.Entry, 80) + "” (" + ev.URL + ")"
	case ev.Reason == "dns-tunnel":
		// The resolver's DNS tunnel detection (proxy/dns/tunnel.go): Name
		// is the tunnel's registrable domain.
		return "used a VPN over DNS (a DNS tunnel) through " + ev.Name
	case ev.URL != "":
		return ev.URL
	}
	return ev.Name
}

// shorten cuts s to at most n bytes at a rune boundary, marking the cut.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
