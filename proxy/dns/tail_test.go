package dns

import (
	"fmt"
	"log/slog"
	"net/netip"
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
	e := newEvents(sk, 100, time.Hour, newMetrics(nil, func() int { return 0 }), slog.New(slog.DiscardHandler))
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
