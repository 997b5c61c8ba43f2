package dns

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// TestOverflowDropLogBounded: with the pending map at its overflow bound
// (a million distinct high-severity names within the collapse window,
// which a few clients within their rate limit can send, each a made-up
// name under a listed domain), every further high-severity event is
// dropped; each drop is counted, but the log must not get a line per
// query: one line every 10 s, with the count since.
func TestOverflowDropLogBounded(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	m := newMetrics(nil, nil, nil)
	e := newEvents(&sink{}, 100, time.Hour, m, log)
	defer e.close()
	e.pending.Store(maxOverflow) // as after a million distinct names
	const n = 30
	for i := range n {
		e.record(reports.Event{Time: time.Now(), Client: netip.MustParseAddr(student), Name: fmt.Sprintf("x%d.extremist.example", i),
			QType: "A", Action: "block", Category: "extremism", Severity: bl.SeverityHigh, Count: 1})
	}
	if d := counterValue(m.eventsDropped); d != n {
		t.Fatalf("dropped %v, want %d", d, n)
	}
	got := buf.String()
	if c := strings.Count(got, "high-severity event"); c != 1 {
		t.Fatalf("%d dropped high-severity events wrote %d log lines, want 1:\n%s", n, c, got)
	}
}
