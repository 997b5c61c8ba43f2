package dns

import (
	"hash/maphash"
	"log/slog"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/internal/lograte"
	"github.com/gatehouse-filter/gatehouse/internal/maproom"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// events takes events off the query path. The first event of a kind (same
// client, name, type, action, category and user) goes to the sink at once,
// so an alert is never held back; repeats within `window` are collapsed
// where they arise into one follow-up event with their count ("41 more
// attempts"). So a burst of retries costs a map lookup each.
//
// With a DurableSink (the breach store), record returns the sequence number
// of the kind's first event, and a block answer is sent only once that is
// durable (Server.sendAfter): a repeat waits only while its first event is
// not yet committed. The repeats' count goes to the sink every
// persistEvery as a reports.Event.Series of the first event, which the
// store adds to one row, so a crash loses at most the last second's count.
// With a plain Sink (the log) the follow-up goes once, when the window ends.
//
// The pending map is the bounded queue: when it holds `max` events, new
// low-severity events are dropped and counted (a metric and a log line a
// minute); high and critical events are always taken (up to maxOverflow,
// reached if the sink has stopped or by a flood of distinct names; beyond
// it they are dropped, counted, and logged at most every 10 s).
type events struct {
	sink    reports.Sink
	dsink   reports.DurableSink // sink, when it tells durability
	window  time.Duration
	max     int64
	log     *slog.Logger
	metrics *metrics
	seed    maphash.Seed
	shards  [16]evShard
	pending atomic.Int64
	dropped atomic.Uint64 // since the last log line
	start   atomic.Uint32 // turns the shard flush begins with
	done    chan struct{}
	stop    chan struct{}
	once    sync.Once

	overflowLog lograte.Counted // the "high-severity event was dropped" lines

	capMu    sync.Mutex
	caps     map[capKey]int64 // "bypass capability" seen: client+category → day number (at most maxCaps)
	capSwept int64            // the day caps was last swept of other days' entries
}

// maxCaps bounds the "bypass capability" keys remembered (client address
// and category, about 80 bytes each: about 5 MiB). Made-up source
// addresses (a UDP query's can be any) must not grow it without limit.
const maxCaps = 1 << 16

// evShard holds the pending keys by a 64-bit hash of their collapseKey.
// The key's parts other than the name live in the interned first-event
// details (device, group, reason, list, ...: a burst of blocked names from
// one client shares one), so a pending key costs a small map slot; a hit
// is checked against them, and a (vanishingly rare) hash collision is
// sent on uncollapsed rather than merged.
type evShard struct {
	mu      sync.Mutex
	m       map[uint64]pending
	peak    int // most keys since the map was last rebuilt (maps never shrink)
	details []reports.Event
	detailN map[reports.Event]uint32
	// recent holds, for one more window, the keys whose window ended with
	// their first event durable: the next event of such a key starts a
	// new window, but neither its answer nor its repeats' wait (the kind
	// is already stored, as for a repeat; a crash loses at most the new
	// window's first event and last second of count, never the kind).
	// Value: when to forget it (unix nanos).
	recent     map[uint64]int64
	recentPeak int
}

type collapseKey struct {
	client   netip.Addr
	name     string
	qtype    string
	action   string
	category string
	user     string
}

type capKey struct {
	client netip.Addr
	cat    bl.Category
}

// pending is a key seen in the current window: its repeats so far and
// how to rebuild the follow-up event.
type pending struct {
	name     string
	first    int64  // unix nanos (real clock) of the first event
	time     int64  // unix nanos (event clock) of the first repeat
	seq      uint64 // the first event's sequence number (DurableSink), 0 if none
	count    int32  // repeats not yet sent
	detail   uint32
	entry    int16 // Entry is the last `entry` bytes of Name (-1: in detail)
	free     bool  // opened on a recent key: no answer in the window waits
	severity bl.Severity
	followed bool // a follow-up (of Series seq) was sent: the window's end is told (reports.EndOfSeries)
}

// maxOverflow bounds the pending events when high and critical ones keep
// coming (the sink stopped, or a flood of distinct names).
const maxOverflow = 1 << 20

// persistEvery is how often repeat counts go to a DurableSink.
const persistEvery = 500 * time.Millisecond

func newEvents(sink reports.Sink, queue int, window time.Duration, m *metrics, log *slog.Logger) *events {
	e := &events{sink: sink, window: window, max: int64(queue), log: log, metrics: m, seed: maphash.MakeSeed(),
		done: make(chan struct{}), stop: make(chan struct{}), caps: map[capKey]int64{}}
	e.dsink, _ = sink.(reports.DurableSink)
	for i := range e.shards {
		e.shards[i].m = map[uint64]pending{}
		e.shards[i].detailN = map[reports.Event]uint32{}
		e.shards[i].recent = map[uint64]int64{}
	}
	go e.run()
	return e
}

// record collapses or queues ev without blocking. It returns the sequence
// number of the event an answer to ev must wait for (see durable): ev's own,
// or the first of its kind's; 0 for none.
func (e *events) record(ev reports.Event) uint64 {
	if e == nil || e.sink == nil {
		return 0
	}
	if ev.Count < 1 {
		ev.Count = 1
	}
	if e.window <= 0 {
		return e.send(ev)
	}
	k := maphash.Comparable(e.seed, collapseKey{ev.Client, ev.Name, ev.QType, ev.Action, ev.Category, ev.User})
	sh := &e.shards[k%uint64(len(e.shards))]
	sh.mu.Lock()
	if p, ok := sh.m[k]; ok {
		if !sh.same(&p, &ev) || int64(p.count)+int64(ev.Count) > math.MaxInt32 {
			// A hash collision (or an absurd count): pass it on as is.
			sh.mu.Unlock()
			return e.send(ev)
		}
		if p.count == 0 && !ev.Time.IsZero() {
			p.time = ev.Time.UnixNano() // the follow-up starts at the first repeat
		}
		p.count += int32(ev.Count)
		p.severity = max(p.severity, ev.Severity)
		sh.m[k] = p
		sh.mu.Unlock()
		return p.wait()
	}
	n := e.pending.Load()
	if n >= maxOverflow || (n >= e.max && ev.Severity < bl.SeverityHigh) {
		sh.mu.Unlock()
		e.metrics.eventsDropped.Inc()
		e.dropped.Add(1)
		if ev.Severity >= bl.SeverityHigh {
			// A flood of made-up names reaches the bound and keeps it
			// there: one line every 10 s, not one per query.
			if ok, held := e.overflowLog.Allow(time.Now(), 10*time.Second); ok {
				name := ev.Name
				if ev.Restricted {
					name = "(restricted)" // never logged
				}
				e.log.Error("event overflow full: a high-severity event was dropped (logged at most every 10s; all are counted in gatehouse_dns_events_dropped_total)",
					"name", name, "client", ev.Client, "more_dropped_since_last_log", held)
			}
		}
		return 0
	}
	// Remember the key with no repeats yet; the event itself goes now,
	// under the lock, so that a repeat sees its sequence number.
	p := sh.newPending(&ev)
	if until, ok := sh.recent[k]; ok {
		delete(sh.recent, k)
		p.free = until > p.first
	}
	p.seq = e.sendLocked(sh, ev)
	sh.m[k] = p
	sh.peak = max(sh.peak, len(sh.m))
	e.pending.Add(1)
	sh.mu.Unlock()
	return p.wait()
}

// len is how many keys are pending (0 before Start).
func (e *events) len() int {
	if e == nil {
		return 0
	}
	return int(e.pending.Load())
}

// wait is the sequence number an answer in p's window waits for (record).
func (p *pending) wait() uint64 {
	if p.free {
		return 0
	}
	return p.seq
}

// sendLocked is send with sh.mu held: a sink that panics releases the
// lock on the way out, so the panic costs only its query.
func (e *events) sendLocked(sh *evShard, ev reports.Event) uint64 {
	sent := false
	defer func() {
		if !sent {
			sh.mu.Unlock()
		}
	}()
	seq := e.send(ev)
	sent = true
	return seq
}

// send hands ev to the sink and counts it as queued, or as dropped when
// the sink refused it (its writer's queue was full). It returns ev's
// sequence number (0 without a DurableSink).
func (e *events) send(ev reports.Event) uint64 {
	var seq uint64
	ok := false
	if e.dsink != nil {
		seq = e.dsink.RecordSeq(ev)
		ok = seq != 0
	} else {
		ok = e.sink.Record(ev)
	}
	if ok {
		e.metrics.eventsQueued.Inc()
	} else {
		e.metrics.eventsDropped.Inc()
	}
	return seq
}

// durable reports whether the event numbered seq (from record) is durable,
// so its answer may go; true for 0.
func (e *events) durable(seq uint64) bool {
	return seq == 0 || e.dsink == nil || e.dsink.IsDurable(seq)
}

// newPending interns the parts of ev that are not in its key (sh.mu held).
func (sh *evShard) newPending(ev *reports.Event) pending {
	p := pending{name: ev.Name, first: time.Now().UnixNano(), entry: -1, severity: ev.Severity}
	d := *ev
	d.Time, d.Name, d.Severity, d.Count = time.Time{}, "", 0, 0
	if n := len(ev.Entry); n <= len(ev.Name) && ev.Name[len(ev.Name)-n:] == ev.Entry {
		p.entry, d.Entry = int16(n), ""
	}
	i, ok := sh.detailN[d]
	if !ok {
		i = uint32(len(sh.details))
		sh.details = append(sh.details, d)
		sh.detailN[d] = i
	}
	p.detail = i
	return p
}

// same reports whether ev has the collapse key of p (sh.mu held).
func (sh *evShard) same(p *pending, ev *reports.Event) bool {
	d := &sh.details[p.detail]
	return p.name == ev.Name && d.Client == ev.Client && d.QType == ev.QType && d.Action == ev.Action &&
		d.Category == ev.Category && d.User == ev.User
}

// event rebuilds the follow-up event of p (sh.mu held).
func (sh *evShard) event(p *pending) reports.Event {
	ev := sh.details[p.detail]
	if p.time != 0 {
		ev.Time = time.Unix(0, p.time).UTC()
	}
	ev.Name, ev.Severity, ev.Count, ev.Series = p.name, p.severity, int(p.count), p.seq
	if p.entry >= 0 {
		ev.Entry = p.name[len(p.name)-int(p.entry):]
	}
	return ev
}

// compactLocked rebuilds the maps when they hold under half of their
// peak (Go maps keep their size: after a burst, the room of its tens of
// thousands of names), and drops the interned details no pending key uses
// any more (sh.mu held); called after a flush.
func (sh *evShard) compactLocked() {
	sh.m = maproom.Shrink(sh.m, &sh.peak)
	sh.recent = maproom.Shrink(sh.recent, &sh.recentPeak)
	if len(sh.details) < 64 || len(sh.details) < 2*len(sh.m) {
		return
	}
	remap := make(map[uint32]uint32, len(sh.m))
	var details []reports.Event
	detailN := make(map[reports.Event]uint32, len(sh.m))
	for k, p := range sh.m {
		j, ok := remap[p.detail]
		if !ok {
			j = uint32(len(details))
			d := sh.details[p.detail]
			details = append(details, d)
			detailN[d] = j
			remap[p.detail] = j
		}
		p.detail = j
		sh.m[k] = p
	}
	sh.details, sh.detailN = details, detailN
}

// firstToday reports whether this is the first "bypass capability" event
// of client for cat today (UTC), so such events are one per device per day.
func (e *events) firstToday(client netip.Addr, cat bl.Category, now time.Time) bool {
	day := now.Unix() / 86400
	k := capKey{client, cat}
	e.capMu.Lock()
	defer e.capMu.Unlock()
	if e.caps[k] == day {
		return false
	}
	if len(e.caps) >= maxCaps {
		if e.capSwept != day { // other days' keys go, once a day
			e.capSwept = day
			for k2, d := range e.caps {
				if d != day {
					delete(e.caps, k2)
				}
			}
		}
		maproom.Make(e.caps, maxCaps) // still full: forget one
	}
	// A forgotten key's client may send a second event today: one too
	// many, never one lost.
	e.caps[k] = day
	return true
}

// followUpRate bounds how many follow-up events a second are handed to
// the sink. A burst of blocked queries leaves one pending key per name,
// all due a window later: handed on at once, tens of thousands of rows
// were written (and their garbage collected) in one go while the resolver
// was answering, which made the DNS tail after a burst. Due keys beyond
// the rate wait for a later tick, their counts still growing, but never
// a second window: a key that overdue leaves regardless, so that pending
// keys stay bounded (as before) under a sustained flood. None is lost,
// and Shutdown hands on everything.
const followUpRate = 5000

// flushEvery is how often due keys are handed on: often enough that the
// follow-ups of a burst leave in small batches.
func (e *events) flushEvery() time.Duration {
	return min(max(e.window/4, 50*time.Millisecond), 100*time.Millisecond)
}

// flush ends the windows at least window old at now (all, if all): their
// repeats go to the sink and their keys are forgotten. With a DurableSink,
// the repeats of every open window go too, as their series. At most
// budget events are handed on (all, if all); the rest wait for a later
// tick, except keys a whole window overdue.
func (e *events) flush(now time.Time, all bool, buf []reports.Event, budget int) []reports.Event {
	start := int(e.start.Add(1)) // no shard waits behind the others
	for j := range e.shards {
		buf, budget = e.flushShard(&e.shards[(start+j)%len(e.shards)], now, all, buf, budget)
	}
	return buf
}

// flushShard is flush for one shard; it returns the budget left.
func (e *events) flushShard(sh *evShard, now time.Time, all bool, buf []reports.Event, budget int) ([]reports.Event, int) {
	nowNs := now.UnixNano()
	cut := nowNs - int64(e.window)
	overdue := cut - int64(e.window)
	buf = buf[:0]
	removed := 0
	sh.mu.Lock()
	for k, until := range sh.recent {
		if until <= nowNs {
			delete(sh.recent, k)
		}
	}
	for k, p := range sh.m {
		end := all || p.first <= cut
		if p.count > 0 && (end || e.dsink != nil) {
			if !all && budget <= 0 && p.first > overdue {
				continue // a later tick; its count keeps growing
			}
			budget--
			ev := sh.event(&p)
			ev.SeriesEnd = end && p.seq != 0
			buf = append(buf, ev)
			p.count, p.time, p.followed = 0, 0, true
			if !end {
				sh.m[k] = p
			}
		} else if end && !all && p.followed && p.seq != 0 {
			buf = append(buf, reports.EndOfSeries(p.seq)) // no repeats since the last follow-up
		}
		if end {
			removed++
			delete(sh.m, k)
			if !all && p.seq != 0 && e.dsink.IsDurable(p.seq) {
				sh.recent[k] = nowNs + int64(e.window)
				sh.recentPeak = max(sh.recentPeak, len(sh.recent))
			}
		}
	}
	sh.compactLocked()
	sh.mu.Unlock()
	for i := range buf {
		if buf[i].Count == 0 {
			e.dsink.RecordSeq(buf[i]) // the end of a series: not an event
		} else {
			e.send(buf[i])
		}
		buf[i] = reports.Event{} // drop its strings
	}
	// A key stays counted until what its window had to tell is handed
	// over, so that no pending keys means nothing of theirs is still to
	// come (TestNewWindowOfStoredKindDoesNotWait read the count between
	// the two and counted the end of the old window as the new one's).
	e.pending.Add(-int64(removed))
	return buf, budget
}

// run flushes one shard per tick, each shard every `every`: a flush of
// every shard at once held a processor for milliseconds (thousands of
// keys after a burst, and the garbage of their follow-ups), and the DNS
// workers waiting behind it made the tail after a burst; one shard at a
// time is a sixteenth of that, as often.
func (e *events) run() {
	defer close(e.done)
	every := e.flushEvery()
	if e.dsink != nil {
		every = max(min(e.window/4, persistEvery), 50*time.Millisecond)
	}
	tick := every / time.Duration(len(e.shards))
	budget := max(int(followUpRate*tick/time.Second), 1)
	t := time.NewTicker(tick)
	defer t.Stop()
	lastDropLog := time.Now()
	var buf []reports.Event
	for i := 0; ; i++ {
		select {
		case <-t.C:
			buf, _ = e.flushShard(&e.shards[i%len(e.shards)], time.Now(), false, buf, budget)
			if n := e.dropped.Load(); n > 0 && time.Since(lastDropLog) >= time.Minute {
				e.dropped.Add(-n)
				lastDropLog = time.Now()
				e.log.Warn("event queue full: low-severity events dropped", "dropped", n)
			}
		case <-e.stop:
			e.flush(time.Now(), true, buf, 0)
			return
		}
	}
}

// close flushes every pending event to the sink.
func (e *events) close() {
	if e == nil {
		return
	}
	e.once.Do(func() { close(e.stop) })
	<-e.done
}
