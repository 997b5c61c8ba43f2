package config

import (
	"strings"
	"testing"
	"time"
)

// TestReportsHealth: reports.health has its defaults and bounds.
func TestReportsHealth(t *testing.T) {
	c := Default()
	if c.Reports.Health.NotifyAfter.D() != 5*time.Minute || c.Reports.Health.RemindEvery.D() != 24*time.Hour {
		t.Errorf("defaults %+v", c.Reports.Health)
	}
	_, err := Parse([]byte("reports:\n  health: {notify_after: 10s, remind_every: 30m}\n"), "g.yaml")
	for _, want := range []string{"g.yaml:2:26: reports.health.notify_after: must be between 1m and 1d",
		"g.yaml:2:45: reports.health.remind_every: must be between 1h and 30d"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v; want %q", err, want)
		}
	}
	c, err = Parse([]byte("reports:\n  health: {notify_after: 15m}\n"), "g.yaml")
	if err != nil || c.Reports.Health.NotifyAfter.D() != 15*time.Minute || c.Reports.Health.RemindEvery.D() != 24*time.Hour {
		t.Errorf("%v %+v", err, c)
	}
}
