package main

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// TestCLIPastRetentionNotShown: the purge ran only inside gatehouse serve
// (at its start, then daily), so with serve stopped (a CLI-only look at a
// copied database, a box off for the holidays, a serve that keeps failing
// to start) or in the day between two purges, gatehouse events and
// incidents printed and exported a pupil's events and incidents past
// reports.retention.breaches. The command-line tools now purge by the
// configured retention before they read.
func TestCLIPastRetentionNotShown(t *testing.T) {
	path, dir := writeConfig(t, cliConfig+"reports: {retention: {breaches: 30d}}\n", cliFiles)
	st, err := reports.Open(filepath.Join(dir, "gatehouse.db"))
	if err != nil {
		t.Fatal(err)
	}
	w, err := reports.NewWriter(st, reports.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cat, err := bl.ParseCategory("pornography")
	if err != nil {
		t.Fatal(err)
	}
	info := cat.Info()
	for _, e := range []struct {
		user string
		at   time.Time
	}{{"pupil.gone", time.Now().Add(-40 * 24 * time.Hour)}, {"pupil.now", time.Now().Add(-time.Minute)}} {
		reports.WaitDurable(w, w.RecordSeq(reports.Event{Time: e.at, Source: "dns", Protocol: "udp",
			Client: netip.MustParseAddr("10.1.0.5"), User: e.user, Group: "students", Name: "porn.example", QType: "A",
			Action: "block", Reason: "category", Category: "pornography", Severity: info.Severity, Route: info.Route, Count: 1}))
	}
	w.Close()
	st.Close()
	for _, args := range [][]string{
		{"events", "--since", "60d", "--csv"},
		{"events", "--since", "60d", "--all", "--json"},
		{"incidents", "--since", "60d", "--csv"},
	} {
		code, out, errs := runCLI(t, append([]string{"--config", path}, args...)...)
		if code != exitOK {
			t.Fatalf("%v: %d\n%s\n%s", args, code, out, errs)
		}
		if !strings.Contains(out, "pupil.now") {
			t.Errorf("%v: the current event is missing:\n%s", args, out)
		}
		if strings.Contains(out, "pupil.gone") {
			t.Errorf("%v: shows a pupil's record past reports.retention.breaches (30d):\n%s", args, out)
		}
	}
}
