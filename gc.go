package main

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// The garbage collector's target while serving (as GOGC, which wins when
// set). The big table (the blocklist index) lives outside the Go heap and
// the rest is small and mostly long-lived (the answer cache), so collecting
// when the heap has grown by a quarter keeps the process's memory small
// and steady. A small heap would then be collected tens of times a second
// under HTTP load (a few KiB of garbage per request), and each collection
// takes one of the two cores for a while. So the growth allowed between
// collections (the headroom) is what the last second allocated divided by
// gcsPerSecond, never less than 4 MiB nor more than 64 MiB: a busy proxy
// is collected about five times a second, and a quiet process or the DNS
// resolver (little garbage per query) keeps the 4 MiB floor. The percent
// never goes below serveGCPercent, so that a large live heap (a school's
// decrypting proxy with its caches) is not marked whole for every 4 MiB
// allocated. At 50 that floor, not the 4 MiB one, bound the resolver (a
// 15 MiB base grew by 7.5 MiB), which kept 3-4 MiB more resident after the
// peer harness's load (bench/HISTORY.md, eighteenth session).
const (
	serveGCPercent = 25
	minGCHeadroom  = 4 << 20
	maxGCHeadroom  = 64 << 20
	gcsPerSecond   = 5
)

// gcPercentFor returns the GC percent that lets a live heap of live
// bytes grow by headroom bytes. The runtime's heap goal is the larger of
// live + base × percent/100, where base is the live heap plus the stacks
// and globals it scans, and 4 MiB × percent/100; the percent is the
// largest that keeps both within live + headroom. (Dividing the headroom
// by the live heap alone gave a small heap two or three times the
// headroom meant: under blocked-request load 1 MiB live beside 1.7 MiB of
// stacks and globals had a 35 MiB goal for 12 MiB.)
func gcPercentFor(live, base, headroom uint64) int {
	if base == 0 {
		return serveGCPercent
	}
	p := headroom * 100 / base
	if floor := (live + headroom) * 100 / runtimeHeapMinimum; floor < p {
		p = floor
	}
	return max(serveGCPercent, int(p))
}

// runtimeHeapMinimum is the runtime's smallest heap goal at GOGC=100
// (it scales with the percent).
const runtimeHeapMinimum = 4 << 20

// gcTuner follows the allocation rate.
type gcTuner struct {
	allocs   uint64 // bytes allocated so far, at the last step
	headroom uint64
}

// step takes the live heap, the GC base (see gcPercentFor) and the bytes
// allocated so far, one second after the last step, and returns the GC
// percent to set.
func (t *gcTuner) step(live, base, allocs uint64) int {
	var rate uint64
	if t.allocs != 0 && allocs > t.allocs {
		rate = allocs - t.allocs
	}
	t.allocs = allocs
	t.headroom = min(max(rate/gcsPerSecond, minGCHeadroom), maxGCHeadroom)
	return gcPercentFor(live, base, t.headroom)
}

// gcSamples are the runtime metrics the tuner reads.
var gcSamples = []string{"/gc/heap/live:bytes", "/gc/scan/stack:bytes", "/gc/scan/globals:bytes", "/gc/heap/allocs:bytes"}

// readGC returns the live heap, the GC base (live heap, scanned stacks and
// globals) and the bytes allocated so far.
func readGC(sample []metrics.Sample) (live, base, allocs uint64) {
	metrics.Read(sample)
	var v [4]uint64
	for i, s := range sample {
		if s.Value.Kind() == metrics.KindUint64 {
			v[i] = s.Value.Uint64()
		}
	}
	return v[0], v[0] + v[1] + v[2], v[3]
}

func newGCSample() []metrics.Sample {
	s := make([]metrics.Sample, len(gcSamples))
	for i, n := range gcSamples {
		s[i].Name = n
	}
	return s
}

// tuneGC sets the GC percent once a second until ctx ends; it does
// nothing when GOGC is set.
func tuneGC(ctx context.Context) {
	if os.Getenv("GOGC") != "" {
		return
	}
	sample := newGCSample()
	var t gcTuner
	last := -1
	set := func() {
		if p := t.step(readGC(sample)); p != last {
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

// writerProc gives the event writer processors to spare: two Ps more
// than the runtime's default (the CPUs it may use). The writer commits on
// a thread of idle priority (reports.Options.Background) that the kernel
// preempts whenever a query's thread wants the CPU, so its P may be held
// by a thread that is not running, and SQLite's reads (alerts, digests,
// the console) hold theirs in C code; without spare Ps the DNS workers and
// the proxy would have fewer. On two cores, the DNS p99 in the rounds
// after a burst was 0.33 / 0.38 / 0.18 ms with one spare P and 0.25 /
// 0.24 / 0.21 with two (bare miekg/dns 0.20 / 0.21 / 0.18 in the same
// run); blocked proxy requests 44,793 and 43,829 req/s (bare-list 45,476).
// GOMAXPROCS in the environment is kept. (Setting it stops Go
// following a container's CPU limit as it changes; the limit at start is
// used.)
func writerProc() {
	writerProcOnce.Do(func() {
		if os.Getenv("GOMAXPROCS") == "" {
			runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 2)
		}
	})
}

// writerProcOnce: the spare processors are added once per process.
var writerProcOnce sync.Once
