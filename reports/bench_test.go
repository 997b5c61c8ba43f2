package reports

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
)

// benchEvents is a realistic mix: 2,000 clients, mostly low-severity
// policy blocks, some inappropriate content, a few bypass and critical.
func benchEvent(i int, at time.Time) Event {
	cats := []string{"games", "games", "social-media", "streaming", "social-media", "gambling", "pornography", "vpn", "self-harm", "malware"}
	cat := cats[i%len(cats)]
	c, _ := bl.ParseCategory(cat)
	client := i % 2000
	e := Event{Time: at, Source: "dns", Protocol: "udp", Client: netip.AddrFrom4([4]byte{10, byte(client / 250), byte(client % 250), 1}),
		Group: "students", Name: fmt.Sprintf("www.site%d.example", i%5000), QType: "A", Action: "block", Reason: "category",
		Category: cat, Severity: c.Info().Severity, Route: c.Info().Route, Bypass: c.Bypass(), List: "ut1", Count: 1}
	if client%40 == 0 {
		e.User = fmt.Sprintf("pupil%d", client)
	}
	if client%100 == 1 {
		e.Group = "staff"
	}
	return e
}

// BenchmarkStoreEvents measures sustained events/s into the store through
// the queue, with backpressure instead of drops, and the database size per
// event. Run with -benchtime=1000000x for the README's per-million size.
func BenchmarkStoreEvents(b *testing.B) {
	path := filepath.Join(b.TempDir(), "g.db")
	st, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	w, err := NewWriter(st, Options{QueueSize: 50_000, StaffToHeadteacher: true, StaffGroups: []string{"staff"}})
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now().UTC().Add(-24 * time.Hour)
	events := make([]Event, 10_000)
	for i := range events {
		events[i] = benchEvent(i, t0)
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		e := events[i%len(events)]
		e.Time = t0.Add(time.Duration(i) * time.Millisecond)
		for !w.Record(e) {
			time.Sleep(20 * time.Microsecond) // the queue is full: wait, never drop in the benchmark
		}
	}
	w.Close()
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "events/s")
	st.db.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
	if fi, err := os.Stat(path); err == nil && b.N >= 10_000 {
		b.ReportMetric(float64(fi.Size())/float64(b.N), "bytes/event")
	}
}

// BenchmarkStoreRepeats is the repeat counts the front doors send every
// half second (Event.Series): each event adds its count to one of 5,000
// series' rows (the first of each inserts it). Allocations include the
// queue's and the transaction's.
func BenchmarkStoreRepeats(b *testing.B) {
	st, err := Open(filepath.Join(b.TempDir(), "g.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	w, err := NewWriter(st, Options{QueueSize: 50_000})
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now().UTC().Add(-time.Hour)
	events := make([]Event, 5000)
	for i := range events {
		events[i] = benchEvent(i, t0)
		events[i].Series, events[i].Count = uint64(i+1), 3
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e := events[i%len(events)]
		e.Time = t0.Add(time.Duration(i) * time.Millisecond)
		for !w.Record(e) {
			time.Sleep(20 * time.Microsecond)
		}
	}
	w.Close()
	b.StopTimer()
	var rows, total int
	if err := st.db.QueryRow("SELECT count(*), coalesce(sum(count),0) FROM events").Scan(&rows, &total); err != nil {
		b.Fatal(err)
	}
	if total != 3*b.N || rows > min(b.N, 5000)*2 {
		b.Fatalf("%d repeats of 3 stored as %d rows counting %d", b.N, rows, total)
	}
}

// BenchmarkDigest2000Clients renders a daily digest for a school of 2,000
// clients with 100,000 events in the period (target ≤ 2 s).
func BenchmarkDigest2000Clients(b *testing.B) {
	st, err := Open(filepath.Join(b.TempDir(), "g.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	t0 := time.Date(2026, 11, 23, 7, 30, 0, 0, london)
	opt := Options{QueueSize: 200_000, StaffToHeadteacher: true, StaffGroups: []string{"staff"}, Now: func() time.Time { return t0 }}
	w, _ := NewWriter(st, opt)
	for i := range 100_000 {
		at := t0.Add(time.Duration(i) * 864 * time.Millisecond) // spread over the day
		for !w.Record(benchEvent(i*7919, at)) {
			time.Sleep(20 * time.Microsecond)
		}
	}
	w.Close()
	if n := count(nil, st, "SELECT count(*) FROM events"); n != 100_000 {
		b.Fatalf("%d events", n)
	}
	now := t0.Add(24 * time.Hour)
	opt.Now = func() time.Time { return now }
	roles := Roles{"dsl": {"dsl@school.example"}, "headteacher": {"head@school.example"}, "it": {"it@school.example"}}
	d, err := NewDigester(st, opt, roles, "Hillside Academy", london,
		[]Schedule{{Name: "daily", Spec: "CRON_TZ=Europe/London 30 7 * * 1-5", Roles: []string{"dsl"}}}, true, nil)
	if err != nil {
		b.Fatal(err)
	}
	st.db.Exec(`INSERT INTO digests (schedule, watermark) VALUES ('daily', ?)`, ms(t0))
	b.ResetTimer()
	var size int
	for i := 0; i < b.N; i++ {
		msgs, err := d.Preview(context.Background(), "daily")
		if err != nil || len(msgs) != 1 {
			b.Fatal(err, len(msgs))
		}
		size = len(msgs[0].HTML) + len(msgs[0].Text)
	}
	b.ReportMetric(float64(size)/1024, "KiB/mail")
}
