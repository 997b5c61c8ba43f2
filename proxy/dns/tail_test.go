package dns

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// TestFollowUpsPaced: a burst leaves one pending key per blocked name, all
// due when the window ends. A flush hands on at most its budget of
// follow-ups (they used to leave all at once, so the event store wrote tens
// of thousands of rows while the resolver answered: the DNS tail after a
// burst); the rest leave on later flushes with their counts exact, and
// keys without repeats are forgotten without costing budget.
func TestFollowUpsPaced(t *testing.T) {
	const names, budget = 2000, 500
	sk := &sink{}
	// A window of an hour: the events' own ticker finds nothing due.
	e := newEvents(sk, 100, time.Hour, newMetrics(nil, nil, nil), slog.New(slog.DiscardHandler))
	t0 := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	ev := func(i int) reports.Event {
		return reports.Event{Time: t0, Source: "dns", Client: netip.MustParseAddr(student), Name: fmt.Sprintf("n%d.porn.example", i),
			QType: "A", Action: "block", Category: "pornography", Severity: bl.SeverityHigh, Count: 1}
	}
	for i := range names {
		for range 1 + i%3 { // 0, 1 or 2 repeats
			e.record(ev(i))
		}
	}
	for i := names; i < names+100; i++ {
		e.record(ev(i)) // no repeats: nothing to hand on
	}
	firsts := len(sk.events())
	due := time.Now().Add(time.Hour + time.Minute) // due, not yet overdue
	repeats := map[string]int{}
	for i := range names {
		if i%3 > 0 {
			repeats[ev(i).Name] = i % 3
		}
	}
	for flush := 1; len(sk.events()) < firsts+len(repeats); flush++ {
		before := len(sk.events())
		e.flush(due, false, nil, budget)
		if n := len(sk.events()) - before; n > budget || n == 0 {
			t.Fatalf("flush %d handed on %d follow-ups (budget %d)", flush, n, budget)
		}
		if flush > len(repeats)/budget+1 {
			t.Fatalf("%d flushes and still %d follow-ups to come", flush, firsts+len(repeats)-len(sk.events()))
		}
	}
	for _, f := range sk.events()[firsts:] {
		if want := repeats[f.Name]; f.Count != want {
			t.Errorf("%s: count %d, want %d", f.Name, f.Count, want)
		}
		delete(repeats, f.Name)
	}
	if len(repeats) != 0 || e.pending.Load() != 0 {
		t.Errorf("%d follow-ups missing, %d keys pending", len(repeats), e.pending.Load())
	}

	// A key a whole window overdue leaves regardless of the budget, so a
	// sustained flood cannot pile up pending keys.
	for i := range names {
		e.record(ev(i))
		e.record(ev(i))
	}
	before := len(sk.events())
	e.flush(time.Now().Add(2*time.Hour+time.Second), false, nil, budget)
	if n := len(sk.events()) - before; n != names || e.pending.Load() != 0 {
		t.Errorf("two windows late: %d follow-ups handed on, want %d; %d keys pending", n, names, e.pending.Load())
	}
	e.close()
}

// TestFlushOneShardAtATime: a tick of the events' runner flushes one
// shard, handing on that shard's follow-ups and no other's, so a tick
// holds its processor for a sixteenth of the pending keys; every shard
// has its turn within one flush period, and the counts stay exact.
func TestFlushOneShardAtATime(t *testing.T) {
	const names = 1600
	sk := &sink{}
	e := newEvents(sk, 10_000, time.Hour, newMetrics(nil, nil, nil), slog.New(slog.DiscardHandler))
	defer e.close()
	t0 := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	ev := func(i int) reports.Event {
		return reports.Event{Time: t0, Source: "dns", Client: netip.MustParseAddr(student), Name: fmt.Sprintf("n%d.porn.example", i),
			QType: "A", Action: "block", Category: "pornography", Severity: bl.SeverityHigh, Count: 1}
	}
	for i := range names {
		e.record(ev(i))
		e.record(ev(i))
	}
	firsts := len(sk.events())
	due := time.Now().Add(time.Hour + time.Minute)
	seen := 0
	for j := range e.shards {
		sh := &e.shards[j]
		sh.mu.Lock()
		keys := len(sh.m)
		sh.mu.Unlock()
		before := len(sk.events())
		_, left := e.flushShard(sh, due, false, nil, names)
		if n := len(sk.events()) - before; n != keys || left != names-keys {
			t.Fatalf("shard %d: %d follow-ups handed on for its %d keys (budget left %d)", j, n, keys, left)
		}
		for k := j + 1; k < len(e.shards); k++ {
			later := &e.shards[k]
			later.mu.Lock() // the run loop's flush may be rebuilding its map
			n := len(later.m)
			later.mu.Unlock()
			if n == 0 {
				t.Fatalf("flushing shard %d emptied a later shard", j)
			}
		}
		seen += keys
	}
	if seen != names || len(sk.events()) != firsts+names || e.pending.Load() != 0 {
		t.Fatalf("%d keys over the shards, %d follow-ups, %d pending; want %d, %d, 0", seen, len(sk.events())-firsts, e.pending.Load(), names, names)
	}
	for _, f := range sk.events()[firsts:] {
		if f.Count != 1 {
			t.Fatalf("%s: count %d, want 1", f.Name, f.Count)
		}
	}
}

// countSink is a DurableSink that only counts: every event is durable.
type countSink struct{ n atomic.Uint64 }

func (c *countSink) Record(reports.Event) bool                { c.n.Add(1); return true }
func (c *countSink) RecordSeq(reports.Event) uint64           { return c.n.Add(1) }
func (c *countSink) IsDurable(uint64) bool                    { return true }
func (c *countSink) AfterDurable(uint64, reports.Waiter) bool { return false }

// BenchmarkFlushTick: what one tick of the events' runner costs with
// 20,000 pending keys (a burst's blocked names) into a durable sink, each
// with a repeat count to persist: a whole flush (every shard, as before)
// and one shard (now, 16 times as often).
func BenchmarkFlushTick(b *testing.B) {
	const names = 20_000
	for _, tc := range []struct {
		name string
		one  bool
	}{{"all-shards", false}, {"one-shard", true}} {
		b.Run(tc.name, func(b *testing.B) {
			e := newEvents(&countSink{}, 100_000, time.Hour, newMetrics(nil, nil, nil), slog.New(slog.DiscardHandler))
			defer e.close()
			t0 := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
			evs := make([]reports.Event, names)
			for i := range evs {
				evs[i] = reports.Event{Time: t0, Source: "dns", Client: netip.MustParseAddr(student), Name: fmt.Sprintf("n%d.porn.example", i),
					QType: "A", Action: "block", Category: "pornography", Severity: bl.SeverityHigh, Count: 1}
				e.record(evs[i])
			}
			var buf []reports.Event
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				for j := range evs { // a repeat for every key: each has a count to hand on
					e.record(evs[j])
				}
				b.StartTimer()
				if tc.one {
					buf, _ = e.flushShard(&e.shards[i%len(e.shards)], t0, false, buf, names)
				} else {
					buf = e.flush(t0, false, buf, names)
				}
			}
		})
	}
}
