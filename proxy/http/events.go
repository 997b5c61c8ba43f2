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
// count when the window ends.
type eventLog struct {
	sink   reports.Sink
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
	repeats int
	last    reports.Event
}

func newEventLog(sink reports.Sink, window func() time.Duration, now func() time.Time) *eventLog {
	return &eventLog{sink: sink, window: window, now: now, seen: map[eventKey]*pending{}}
}

func (l *eventLog) record(ev reports.Event) {
	if l.sink == nil {
		return
	}
	w := l.window()
	if w <= 0 || ev.Action == "allow" || ev.Action == "report" {
		l.sink.Record(ev)
		return
	}
	k := eventKey{ev.Client, ev.User, ev.Source, ev.Name, ev.URL, ev.Action, ev.Reason, ev.Category, ev.Method, ev.Status}
	now := l.now()
	l.mu.Lock()
	if p, ok := l.seen[k]; ok && now.Sub(p.first) < w {
		p.repeats++
		p.last = ev
		l.mu.Unlock()
		return
	}
	l.seen[k] = &pending{first: now}
	l.mu.Unlock()
	l.sink.Record(ev)
}

// flush sends the counts of windows that have ended (all, if all is set).
func (l *eventLog) flush(all bool) {
	if l.sink == nil {
		return
	}
	w := l.window()
	now := l.now()
	var out []reports.Event
	l.mu.Lock()
	for k, p := range l.seen {
		if all || now.Sub(p.first) >= w {
			if p.repeats > 0 {
				ev := p.last
				ev.Count = p.repeats
				out = append(out, ev)
			}
			delete(l.seen, k)
		}
	}
	l.mu.Unlock()
	for _, ev := range out {
		l.sink.Record(ev)
	}
}

func (l *eventLog) run(stop <-chan struct{}) {
	t := time.NewTicker(time.Second)
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
