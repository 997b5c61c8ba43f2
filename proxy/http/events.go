package httpproxy

import (
	"hash/maphash"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-filter/gatehouse/internal/maproom"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// eventLog sends events to the sink, collapsing identical repeats: the
// first of a kind goes at once (so alerts are never delayed); repeats
// within the collapse window are counted and sent as one event with that
// count. With a DurableSink (the breach store) the count goes every
// persistEvery as a reports.Event.Series of the first event, which the
// store adds to one row, so a crash loses at most the last second's count;
// record returns the sequence number a block answer waits for (the first
// event's, see Server.eventRef). With a plain sink the count goes once,
// when the window ends. A repeat arriving after its window has ended but
// before the flush ends that window (its count is sent) and starts a new
// one, so no count is lost.
type eventLog struct {
	sink   reports.Sink
	dsink  reports.DurableSink // sink, when it tells durability
	window func() time.Duration
	now    func() time.Time
	seed   maphash.Seed
	keys   atomic.Int64 // in all shards, at most maxSeen
	shards [16]logShard
}

// logShard holds the open windows by a 64-bit hash of their key. A repeat
// (by far the commonest event: a tool retrying, a page's blocked images)
// takes the read lock only and counts with atomics, so the proxy's
// connections do not queue behind one another on it; a new window, a
// window ended early and the flush take the write lock.
type logShard struct {
	mu   sync.RWMutex
	seen map[uint64]*pending
	peak int      // most keys since seen was last rebuilt (maproom.Shrink)
	_    [24]byte // one cache line each
}

type eventKey struct {
	client                                  netip.Addr
	user, source, name, url, action, reason string
	category, method                        string
	status                                  int
	term                                    string // a search's: each term searched for is its own event
}

// pending is an open window. All but repeats and last are fixed when it
// opens. (Its key is the first event's fields: see is.)
type pending struct {
	first   time.Time
	seq     uint64        // the first event's sequence number (DurableSink), 0 if none
	ev      reports.Event // the first event; its reference code is the one its repeats show
	repeats atomic.Int64  // not yet sent
	last    atomic.Int64  // the latest repeat's time, unix nanos (0: none)
	// followed: a follow-up (of Series seq) was sent, so the window's end
	// is told to the sink even with no repeats since (reports.EndOfSeries).
	followed bool
}

// persistEvery is how often repeat counts go to a DurableSink.
const persistEvery = 500 * time.Millisecond

func newEventLog(sink reports.Sink, window func() time.Duration, now func() time.Time) *eventLog {
	l := &eventLog{sink: sink, window: window, now: now, seed: maphash.MakeSeed()}
	l.dsink, _ = sink.(reports.DurableSink)
	for i := range l.shards {
		l.shards[i].seen = map[uint64]*pending{}
	}
	return l
}

// maxSeen bounds the keys being collapsed (about 600 bytes each, and
// their URLs).
const maxSeen = 1 << 16

// sendLocked is send with sh.mu held: a sink that panics releases the lock
// on the way out, so the panic costs only its connection.
func (l *eventLog) sendLocked(sh *logShard, ev reports.Event) uint64 {
	sent := false
	defer func() {
		if !sent {
			sh.mu.Unlock()
		}
	}()
	seq := l.send(ev)
	sent = true
	return seq
}

// detach copies the strings of ev that may point into a request's head:
// the front reads a head into one string (reqread.go), so a host or URL
// kept for the collapse window, in the writer's queue or in an incident
// would keep the whole head, its cookies too (up to 4 KiB each).
func detach(ev *reports.Event) {
	ev.Name, ev.URL, ev.SearchTerm = strings.Clone(ev.Name), strings.Clone(ev.URL), strings.Clone(ev.SearchTerm)
}

// record sends or counts ev. It returns the sequence number an answer to
// ev waits for before it is written (0: none).
func (l *eventLog) record(ev reports.Event) uint64 {
	seq, _ := l.recordRef(ev)
	return seq
}

// recordRef is record, also returning the reference code stored for ev:
// its own, or for a repeat collapsed into the first event of its kind,
// the first one's, so that the page a repeat gets quotes a reference IT
// can find (a "report a mistake" names it).
func (l *eventLog) recordRef(ev reports.Event) (uint64, string) {
	if l.sink == nil {
		return 0, ev.Ref
	}
	w := l.window()
	if w <= 0 || ev.Action == "allow" || ev.Action == "report" {
		detach(&ev)
		return l.send(ev), ev.Ref
	}
	h := maphash.Comparable(l.seed, keyOf(&ev))
	sh := &l.shards[h%uint64(len(l.shards))]
	now := l.now()
	sh.mu.RLock()
	p := sh.seen[h]
	if p != nil && p.is(&ev) && now.Sub(p.first) < w {
		seq, ref := p.repeat(&ev)
		sh.mu.RUnlock()
		return seq, ref
	}
	sh.mu.RUnlock()
	detach(&ev) // kept (pending, the writer's queue): not a repeat

	sh.mu.Lock()
	p = sh.seen[h]
	switch {
	case p != nil && !p.is(&ev):
		// A hash collision (vanishingly rare): this event goes uncollapsed.
		sh.mu.Unlock()
		return l.send(ev), ev.Ref
	case p != nil && now.Sub(p.first) < w:
		seq, ref := p.repeat(&ev) // opened since the read lock was let go
		sh.mu.Unlock()
		return seq, ref
	case p == nil && l.keys.Load() >= maxSeen:
		// Full: this key is not collapsed (its event goes as it is) until
		// the flush has made room. Nothing is lost; the map stays bounded.
		sh.mu.Unlock()
		return l.send(ev), ev.Ref
	}
	var ended reports.Event
	if p != nil {
		if n := p.repeats.Load(); n > 0 {
			ended = p.followUp(n) // the window ended before the flush saw it
			ended.SeriesEnd = p.seq != 0
		} else if p.followed && p.seq != 0 {
			ended = reports.EndOfSeries(p.seq)
		}
	} else {
		l.keys.Add(1)
	}
	p = &pending{first: now, ev: ev}
	sh.seen[h] = p
	sh.peak = max(sh.peak, len(sh.seen))
	// Sent under the lock, so that a repeat sees the sequence number.
	p.seq = l.sendLocked(sh, ev)
	seq := p.seq
	sh.mu.Unlock()
	if ended.Count > 0 || ended.SeriesEnd {
		l.send(ended)
	}
	return seq, ev.Ref
}

// keyOf is the fields of ev that make its collapse key.
func keyOf(ev *reports.Event) eventKey {
	return eventKey{ev.Client, ev.User, ev.Source, ev.Name, ev.URL, ev.Action, ev.Reason, ev.Category, ev.Method, ev.Status, ev.SearchTerm}
}

// is reports whether ev has p's key (its first event's).
func (p *pending) is(ev *reports.Event) bool { return keyOf(&p.ev) == keyOf(ev) }

// repeat counts ev as a repeat of p (sh.mu held, read or write) and
// returns what its answer waits for and quotes.
func (p *pending) repeat(ev *reports.Event) (uint64, string) {
	p.repeats.Add(1)
	if !ev.Time.IsZero() {
		p.last.Store(ev.Time.UnixNano())
	}
	ref := p.ev.Ref
	if ref == "" {
		ref = ev.Ref
	}
	return p.seq, ref
}

// followUp is the event for n of p's unsent repeats: the first event's
// details (the key's, and its reference code), at the latest repeat's time.
func (p *pending) followUp(n int64) reports.Event {
	ev := p.ev
	if t := p.last.Load(); t != 0 {
		ev.Time = time.Unix(0, t).UTC()
	}
	ev.Count, ev.Series = int(n), p.seq
	return ev
}

func (l *eventLog) send(ev reports.Event) uint64 {
	if l.dsink != nil {
		return l.dsink.RecordSeq(ev)
	}
	l.sink.Record(ev)
	return 0
}

// flush sends the counts of windows that have ended (all, if all is set)
// and, with a DurableSink, those of open windows too.
func (l *eventLog) flush(all bool) {
	if l.sink == nil {
		return
	}
	w := l.window()
	now := l.now()
	var out []reports.Event
	for i := range l.shards {
		sh := &l.shards[i]
		removed := 0
		sh.mu.Lock() // no repeat is being counted
		for h, p := range sh.seen {
			end := all || now.Sub(p.first) >= w
			if n := p.repeats.Load(); n > 0 && (end || l.dsink != nil) {
				ev := p.followUp(n)
				ev.SeriesEnd = end && p.seq != 0
				out = append(out, ev)
				p.repeats.Store(0)
				p.followed = true
			} else if end && !all && p.followed && p.seq != 0 {
				out = append(out, reports.EndOfSeries(p.seq))
			}
			if end {
				delete(sh.seen, h)
				removed++
			}
		}
		sh.seen = maproom.Shrink(sh.seen, &sh.peak)
		sh.mu.Unlock()
		l.keys.Add(-int64(removed))
	}
	for _, ev := range out {
		l.send(ev)
	}
}

// durable blocks until the event numbered seq (from record) is durable.
func (l *eventLog) durable(seq uint64) {
	if l.dsink != nil {
		reports.WaitDurable(l.dsink, seq)
	}
}

func (l *eventLog) run(stop <-chan struct{}) {
	every := time.Second
	if l.dsink != nil {
		every = persistEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			l.flush(false)
		}
	}
}
