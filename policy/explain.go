package policy

import (
	"slices"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
)

// BlockingSchedules names the schedules of a group that block c at t, in
// config order. It is empty when the group blocks c at all times (or not
// at all), so a non-empty answer means the block comes from a schedule.
func (e *Engine) BlockingSchedules(groupName string, c bl.Category, t time.Time) []string {
	g, ok := e.groups[groupName]
	if !ok || g.always.Has(c) {
		return nil
	}
	wm := e.minute(t)
	var out []string
	for i := range g.windows {
		w := &g.windows[i]
		if w.cats.Has(c) && w.active(wm) && !slices.Contains(out, w.schedule) {
			out = append(out, w.schedule)
		}
	}
	return out
}
