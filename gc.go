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
// steady. But a small heap would then be collected tens of times a second
// under HTTP load (a few KiB of garbage per request), so the growth allowed
// is never less than minGCHeadroom.
const (
	serveGCPercent = 50
	minGCHeadroom  = 4 << 20
)

// gcPercentFor returns the GC percent for a live heap of live bytes.
func gcPercentFor(live uint64) int {
	if live == 0 {
		return serveGCPercent
	}
	return max(serveGCPercent, int(minGCHeadroom*100/live))
}

// tuneGC sets the GC percent from the live heap once a second until ctx
// ends; it does nothing when GOGC is set.
func tuneGC(ctx context.Context) {
	if os.Getenv("GOGC") != "" {
		return
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	last := -1
	set := func() {
		metrics.Read(sample)
		var live uint64
		if sample[0].Value.Kind() == metrics.KindUint64 {
			live = sample[0].Value.Uint64()
		}
		if p := gcPercentFor(live); p != last {
			debug.SetGCPercent(p)
			last = p
		}
	}
	set()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			set()
		}
	}
}
