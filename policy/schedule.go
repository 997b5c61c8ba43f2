package policy

import (
	"cmp"
	"slices"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
)

// A name a schedule will block is allowed until the window opens, but an
// answer given just before keeps working on the device for as long as it
// may be cached: the DNS resolver caps its TTL at UntilScheduled.

const minutesPerWeek = 7 * 24 * 60

// schedStart is a minute of the week (Sunday 00:00 = 0, school time) at
// which windows open that block cats.
type schedStart struct {
	at   int32
	cats bl.CategorySet
}

// buildStarts fills g.sched and g.starts from g.windows, once per engine
// build: every window's opening on each of its days, in week order, those
// at the same minute merged.
func (g *group) buildStarts() {
	for i := range g.windows {
		w := &g.windows[i]
		if w.from == w.to {
			continue // empty (refused by config validation)
		}
		g.sched |= w.cats
	}
	g.sched &= blockable &^ g.always &^ alwaysBlocked
	if g.sched == 0 {
		return
	}
	for i := range g.windows {
		w := &g.windows[i]
		if w.from == w.to || w.cats&g.sched == 0 {
			continue
		}
		for d := range 7 {
			if w.days&(1<<d) != 0 {
				g.starts = append(g.starts, schedStart{at: int32(d*24*60 + w.from), cats: w.cats & g.sched})
			}
		}
	}
	slices.SortFunc(g.starts, func(a, b schedStart) int { return cmp.Compare(a.at, b.at) })
	merged := g.starts[:0]
	for _, s := range g.starts {
		if n := len(merged); n > 0 && merged[n-1].at == s.at {
			merged[n-1].cats |= s.cats
			continue
		}
		merged = append(merged, s)
	}
	g.starts = slices.Clip(merged)
}

// Scheduled is the categories of an allowed or rewritten request that a
// schedule of its group blocks at other times (when next: UntilScheduled).
// It is none for a request the group's allow list decided (the allow list
// wins over schedules) and means nothing for a block.
func (d *Decision) Scheduled() bl.CategorySet { return d.scheduled }

// UntilScheduled returns how long after t a schedule of the named group
// next blocks one of cats (from Decision.Scheduled), or false when no
// schedule of the group ever does; 0 when one already does at t. Schedules
// repeat every week, so the answer is within a week; a change of the
// school's clock (summer time) on the way is allowed for, erring early. It
// does not allocate.
func (e *Engine) UntilScheduled(groupName string, cats bl.CategorySet, t time.Time) (time.Duration, bool) {
	g, ok := e.groups[groupName]
	if !ok || cats&g.sched == 0 {
		return 0, false
	}
	if t.IsZero() {
		t = time.Now()
	}
	cs := e.clockAt(t)
	wm := weekMinute{cs.weekday, cs.minute}
	if g.blockedAt(wm)&cats != 0 {
		return 0, true
	}
	m := int32(wm.weekday*24*60 + wm.minute)
	// The first opening after m, then on round the week.
	i, j := 0, len(g.starts)
	for i < j {
		if h := int(uint(i+j) >> 1); g.starts[h].at <= m {
			i = h + 1
		} else {
			j = h
		}
	}
	for k := range len(g.starts) {
		s := &g.starts[(i+k)%len(g.starts)]
		if s.cats&cats == 0 {
			continue
		}
		ahead := int64(s.at - m)
		if ahead <= 0 {
			ahead += minutesPerWeek
		}
		at := cs.start + 60*ahead // at the UTC offset in force at t
		if at >= cs.zoneEnd && cs.zoneShift > 0 {
			at -= cs.zoneShift // the clocks go forward on the way: it opens sooner
		}
		return max(time.Unix(at, 0).Sub(t), 0), true
	}
	return 0, false
}
