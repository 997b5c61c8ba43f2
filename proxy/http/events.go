package httpproxy

import (
	"net/netip"
	"sync"
	"time"

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
	mu     sync.Mutex
	seen   map[eventKey]*pending
}

type eventKey struct {
	client                                  netip.Addr
	user, source, name, url, action, reason string
	category, method                        string
	status                                  int
}

type pending struct {
	first   time.Time
	repeats int    // not yet sent
	seq     uint64 // the first event's sequence number (DurableSink), 0 if none
	ref     string // the first event's reference code (block page), which its repeats show
	last    reports.Event
}

// persistEvery is how often repeat counts go to a DurableSink.
const persistEvery = 500 * time.Millisecond

func newEventLog(sink reports.Sink, window func() time.Duration, now func() time.Time) *eventLog {
	l := &eventLog{sink: sink, window: window, now: now, seen: map[eventKey]*pending{}}
	l.dsink, _ = sink.(reports.DurableSink)
	return l
}

// record sends or counts ev. It returns the sequence number an answer to
// ev waits for before it is written (0: none).
// maxSeen bounds the keys being collapsed (about 200 bytes each).
const maxSeen = 1 << 16

// sendLocked is send with l.mu held: a sink that panics releases the lock
// on the way out, so the panic costs only its connection.
func (l *eventLog) sendLocked(ev reports.Event) uint64 {
	sent := false
	defer func() {
		if !sent {
			l.mu.Unlock()
		}
	}()
	seq := l.send(ev)
	sent = true
	return seq
}

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
		return l.send(ev), ev.Ref
	}
	k := eventKey{ev.Client, ev.User, ev.Source, ev.Name, ev.URL, ev.Action, ev.Reason, ev.Category, ev.Method, ev.Status}
	now := l.now()
	l.mu.Lock()
	p, ok := l.seen[k]
	if ok && now.Sub(p.first) < w {
		p.repeats++
		p.last = ev
		seq, ref := p.seq, p.ref
		l.mu.Unlock()
		if ref == "" {
			ref = ev.Ref
		}
		return seq, ref
	}
	var ended reports.Event
	if ok && p.repeats > 0 {
		ended = p.followUp() // the window ended before the flush saw it
	}
	if !ok && len(l.seen) >= maxSeen {
		// Full: this key is not collapsed (its event goes as it is) until
		// the flush has made room. Nothing is lost; the map stays bounded.
		l.mu.Unlock()
		return l.send(ev), ev.Ref
	}
	p = &pending{first: now, ref: ev.Ref}
	l.seen[k] = p
	// Sent under the lock, so that a repeat sees the sequence number.
	p.seq = l.sendLocked(ev)
	seq := p.seq
	l.mu.Unlock()
	if ended.Count > 0 {
		l.send(ended)
	}
	return seq, ev.Ref
}

// followUp is the event for p's unsent repeats.
func (p *pending) followUp() reports.Event {
	ev := p.last
	ev.Count, ev.Series = p.repeats, p.seq
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
	l.mu.Lock()
	for k, p := range l.seen {
		end := all || now.Sub(p.first) >= w
		if p.repeats > 0 && (end || l.dsink != nil) {
			out = append(out, p.followUp())
			p.repeats = 0
		}
		if end {
			delete(l.seen, k)
		}
	}
	l.mu.Unlock()
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
