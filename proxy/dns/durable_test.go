package dns

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/gatehouse-filter/gatehouse/internal/storetest"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// storedCount is the count stored for name: its events and their repeats.
func storedCount(t *testing.T, st *reports.Store, name string) int64 {
	t.Helper()
	return storetest.Int(t, st, `SELECT COALESCE(SUM(count), 0) FROM events WHERE name = ?`, name)
}

// TestBlockAnswerAfterDurable: when a client has a block answer, its event
// is already in the database (UDP on our workers, on a wildcard address
// whose replies need the right source address, and TCP), and the repeats'
// count reaches the database long before the collapse window ends.
func TestBlockAnswerAfterDurable(t *testing.T) {
	for _, listen := range []string{"127.0.0.1:0", "0.0.0.0:0"} {
		t.Run(listen, func(t *testing.T) {
			st, w := storetest.Open(t)
			ts := startServer(t, func(o *Options) { o.Sink, o.Collapse, o.Listen = w, time.Hour, []string{listen} })
			_, port, _ := net.SplitHostPort(ts.udp)
			to := ts.udp
			if listen == "0.0.0.0:0" {
				to = net.JoinHostPort("127.0.0.3", port)
			}
			for i := range 40 {
				for _, netw := range []string{"udp", "tcp"} {
					name := fmt.Sprintf("x%d-%s.porn.example", i, netw)
					if r := ask(t, netw, to, staff, name, mdns.TypeA, i%2 == 0); r.Rcode != mdns.RcodeNameError {
						t.Fatalf("%s %s: %v", netw, name, r)
					}
					if n := storedCount(t, st, name); n != 1 {
						t.Fatalf("%s %s answered with %d events stored", netw, name, n)
					}
				}
			}
			// The held answers are in gatehouse_dns_held_seconds: a first
			// event is queued just before its answer would go, so most wait.
			if n, sum := histCount(t, ts.metrics.held); n < 1 || n > 80 || sum <= 0 {
				t.Errorf("held answers: %d observed (%.6f s in all), want 1 to 80", n, sum)
			}
			for range 25 {
				ask(t, "udp", to, staff, "again.porn.example", mdns.TypeA, false)
			}
			if n := storedCount(t, st, "again.porn.example"); n < 1 {
				t.Fatal("the first of the repeated queries is not stored")
			}
			deadline := time.Now().Add(20 * time.Second)
			for storedCount(t, st, "again.porn.example") != 25 {
				if time.Now().After(deadline) {
					t.Fatalf("repeat count stored %d of 25 (window 1h)", storedCount(t, st, "again.porn.example"))
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// durableSink numbers events and calls those up to durable durable.
type durableSink struct {
	sink
	seq, durable atomic.Uint64
}

func (d *durableSink) RecordSeq(ev reports.Event) uint64 { d.Record(ev); return d.seq.Add(1) }
func (d *durableSink) IsDurable(seq uint64) bool         { return seq <= d.durable.Load() }
func (d *durableSink) AfterDurable(uint64, reports.Waiter) bool {
	return false
}

// TestNewWindowOfStoredKindDoesNotWait: an answer waits for the first
// event of its kind, and so do the repeats of a first event not yet
// stored; once a window has ended with that event stored, the kind's next
// window waits for nothing (its first event nor its repeats: a tool
// retrying a blocked name every few seconds is answered at once), while
// a new kind does wait.
func TestNewWindowOfStoredKindDoesNotWait(t *testing.T) {
	ds := &durableSink{}
	// The kind is remembered for one window after its own ends; the test
	// sees the end by polling, so a window shorter than a busy machine's
	// scheduling delays let it be forgotten first (it failed once so with
	// 50 ms, "wait for 3").
	e := newEvents(ds, 1000, time.Second, newMetrics(nil, nil, nil), slog.New(slog.DiscardHandler))
	defer e.close()
	ev := reports.Event{Client: netip.MustParseAddr("10.1.0.1"), Name: "a.porn.example", QType: "A", Action: "block", Category: "pornography", Count: 1}
	if w := e.record(ev); w != 1 {
		t.Fatalf("first event: wait for %d, want 1", w)
	}
	if w := e.record(ev); w != 1 {
		t.Fatalf("a repeat before the first is stored: wait for %d, want 1", w)
	}
	ds.durable.Store(1)
	deadline := time.Now().Add(30 * time.Second)
	for e.pending.Load() != 0 { // the window ends (the run loop flushes)
		if time.Now().After(deadline) {
			t.Fatal("window never ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
	seqBefore := ds.seq.Load()
	if w := e.record(ev); w != 0 {
		t.Errorf("first event of a new window of a stored kind: wait for %d, want none", w)
	}
	if w := e.record(ev); w != 0 {
		t.Errorf("repeat in the new window: wait for %d, want none", w)
	}
	if n := ds.seq.Load(); n != seqBefore+1 {
		t.Errorf("%d events sent for the new window, want its first one", n-seqBefore)
	}
	other := ev
	other.Name = "b.porn.example"
	if w := e.record(other); w == 0 {
		t.Error("a new kind did not wait")
	}
}

// TestSeriesEndTold: the end of a window whose repeats went to the store
// as a series is told once, after its last follow-up (on it, or alone when
// no repeats came since), so that the store can forget the series; a
// window with no repeats tells nothing.
func TestSeriesEndTold(t *testing.T) {
	ds := &durableSink{}
	e := newEvents(ds, 1000, 2*time.Second, newMetrics(nil, nil, nil), slog.New(slog.DiscardHandler))
	defer e.close()
	ev := reports.Event{Client: netip.MustParseAddr("10.1.0.1"), Name: "a.porn.example", QType: "A", Action: "block", Category: "pornography", Count: 1}
	quiet := ev
	quiet.Name = "b.porn.example"
	first := e.record(ev)
	e.record(ev)
	e.record(quiet)
	ds.durable.Store(ds.seq.Load())
	deadline := time.Now().Add(30 * time.Second)
	for e.pending.Load() != 0 { // the windows end (the run loop flushes)
		if time.Now().After(deadline) {
			t.Fatal("windows never ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var series []reports.Event
	for _, x := range ds.events() {
		if x.Series != 0 {
			series = append(series, x)
		}
	}
	if len(series) == 0 {
		t.Fatal("the repeat was never sent as a follow-up")
	}
	count := 0
	for i, x := range series {
		if x.Series != first {
			t.Errorf("follow-up of series %d, want %d (the quiet window has no series)", x.Series, first)
		}
		count += x.Count
		if x.SeriesEnd != (i == len(series)-1) {
			t.Errorf("follow-up %d of %d: SeriesEnd %v", i+1, len(series), x.SeriesEnd)
		}
	}
	if count != 1 {
		t.Errorf("follow-ups count %d repeats, want 1", count)
	}
}
