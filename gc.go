package main

import (
	"context"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// The garbage collector's target while serving (as GOGC, which wins when
// set). The big table (the blocklist index) lives outside the Go heap and
// the rest is small and mostly long-lived (the answer cache), so collecting
// when the heap has grown by half keeps the process's memory small and
// steady. A small heap would then be collected tens of times a second under
// HTTP load (a few KiB of garbage per request), and each collection takes
// one of the two cores for a while. So the growth allowed between
// collections (the headroom) is what the last second allocated divided by
// gcsPerSecond, never less than 4 MiB nor more than 64 MiB: a busy proxy
// is collected about five times a second, and a quiet process or the DNS
// resolver (little garbage per query) keeps the 4 MiB floor.
const (
	serveGCPercent = 50
	minGCHeadroom  = 4 << 20
	maxGCHeadroom  = 64 << 20
	gcsPerSecond   = 5
)

// gcPercentFor returns the GC percent for a live heap of live bytes that
// may grow by headroom bytes.
func gcPercentFor(live, headroom uint64) int {
	if live == 0 {
		return serveGCPercent
	}
	return max(serveGCPercent, int(headroom*100/live))
}

// gcTuner follows the allocation rate.
type gcTuner struct {
	allocs   uint64 // bytes allocated so far, at the last step
	headroom uint64
}

// step takes the live heap and the bytes allocated so far, one second
// after the last step, and returns the GC percent to set.
func (t *gcTuner) step(live, allocs uint64) int {
	var rate uint64
	if t.allocs != 0 && allocs > t.allocs {
		rate = allocs - t.allocs
	}
	t.allocs = allocs
	t.headroom = min(max(rate/gcsPerSecond, minGCHeadroom), maxGCHeadroom)
	return gcPercentFor(live, t.headroom)
}

// tuneGC sets the GC percent once a second until ctx ends; it does
// nothing when GOGC is set.
func tuneGC(ctx context.Context) {
	if os.Getenv("GOGC") != "" {
		return
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/heap/allocs:bytes"}}
	var t gcTuner
	last := -1
	set := func() {
		metrics.Read(sample)
		var v [2]uint64
		for i, s := range sample {
			if s.Value.Kind() == metrics.KindUint64 {
				v[i] = s.Value.Uint64()
			}
		}
		if p := t.step(v[0], v[1]); p != last {
			debug.SetGCPercent(p)
			last = p
		}
	}
	set()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			set()
		}
	}
}
