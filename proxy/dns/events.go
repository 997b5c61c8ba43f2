package dns

import (
	"hash/maphash"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// events takes events off the query path. The first event of a kind (same
// client, name, type, action, category and user) goes to the sink at once,
// so an alert is never held back; repeats within `window` are collapsed
// where they arise into one follow-up event with their count ("41 more
// attempts"), which a goroutine hands to the sink when the window ends. So
// a burst of retries costs a map lookup each and reaches the sink twice.
//
// The pending map is the bounded queue: when it holds `max` events, new
// low-severity events are dropped and counted (a metric and a log line a
// minute); high and critical events are always taken (up to maxOverflow,
// reached only if the sink has stopped).
type events struct {
	sink    reports.Sink
	window  time.Duration
	max     int64
	log     *slog.Logger
	metrics *metrics
	seed    maphash.Seed
	shards  [16]evShard
	pending atomic.Int64
	dropped atomic.Uint64 // since the last log line
	done    chan struct{}
	stop    chan struct{}
	once    sync.Once

	capMu sync.Mutex
	caps  map[capKey]int64 // "bypass capability" seen: client+category → day number
}

type evShard struct {
	mu sync.Mutex
	m  map[collapseKey]*pending
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

type pending struct {
	ev    reports.Event
	first int64 // unix nanos (real clock)
}

// maxOverflow bounds the pending events when high and critical ones keep
// coming with the sink stopped.
const maxOverflow = 1 << 20

func newEvents(sink reports.Sink, queue int, window time.Duration, m *metrics, log *slog.Logger) *events {
	e := &events{sink: sink, window: window, max: int64(queue), log: log, metrics: m, seed: maphash.MakeSeed(),
		done: make(chan struct{}), stop: make(chan struct{}), caps: map[capKey]int64{}}
	for i := range e.shards {
		e.shards[i].m = map[collapseKey]*pending{}
	}
	go e.run()
	return e
}

// record collapses or queues ev without blocking.
func (e *events) record(ev reports.Event) {
	if e == nil || e.sink == nil {
		return
	}
	if ev.Count < 1 {
		ev.Count = 1
	}
	if e.window <= 0 {
		e.metrics.eventsQueued.Inc()
		e.sink.Record(ev)
		return
	}
	k := collapseKey{ev.Client, ev.Name, ev.QType, ev.Action, ev.Category, ev.User}
	sh := &e.shards[maphash.String(e.seed, ev.Name)%uint64(len(e.shards))]
	sh.mu.Lock()
	if p := sh.m[k]; p != nil {
		if p.ev.Count == 0 {
			p.ev.Time = ev.Time // the follow-up starts at the first repeat
		}
		p.ev.Count += ev.Count
		if ev.Severity > p.ev.Severity {
			p.ev.Severity = ev.Severity
		}
		sh.mu.Unlock()
		return
	}
	n := e.pending.Load()
	if n >= maxOverflow || (n >= e.max && ev.Severity < bl.SeverityHigh) {
		sh.mu.Unlock()
		e.metrics.eventsDropped.Inc()
		e.dropped.Add(1)
		if ev.Severity >= bl.SeverityHigh {
			e.log.Error("event overflow full: a high-severity event was dropped", "name", ev.Name, "client", ev.Client)
		}
		return
	}
	// Remember the key with no repeats yet; the event itself goes now.
	rep := ev
	rep.Count = 0
	sh.m[k] = &pending{ev: rep, first: time.Now().UnixNano()}
	e.pending.Add(1)
	sh.mu.Unlock()
	e.metrics.eventsQueued.Inc()
	e.sink.Record(ev)
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
	if len(e.caps) > 100_000 {
		for k2, d := range e.caps {
			if d != day {
				delete(e.caps, k2)
			}
		}
	}
	e.caps[k] = day
	return true
}

// flush hands pending events at least window old (all, if all) to the sink.
func (e *events) flush(all bool, buf []reports.Event) []reports.Event {
	cut := time.Now().Add(-e.window).UnixNano()
	for i := range e.shards {
		sh := &e.shards[i]
		buf = buf[:0]
		removed := 0
		sh.mu.Lock()
		for k, p := range sh.m {
			if all || p.first <= cut {
				removed++
				if p.ev.Count > 0 {
					buf = append(buf, p.ev)
				}
				delete(sh.m, k)
			}
		}
		sh.mu.Unlock()
		e.pending.Add(-int64(removed))
		for _, ev := range buf {
			e.sink.Record(ev)
		}
	}
	return buf
}

func (e *events) run() {
	defer close(e.done)
	t := time.NewTicker(max(e.window/4, 50*time.Millisecond))
	defer t.Stop()
	lastDropLog := time.Now()
	var buf []reports.Event
	for {
		select {
		case <-t.C:
			buf = e.flush(false, buf)
			if n := e.dropped.Load(); n > 0 && time.Since(lastDropLog) >= time.Minute {
				e.dropped.Add(-n)
				lastDropLog = time.Now()
				e.log.Warn("event queue full: low-severity events dropped", "dropped", n)
			}
		case <-e.stop:
			e.flush(true, buf)
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
