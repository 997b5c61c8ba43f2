package main

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestGCPercentFor(t *testing.T) {
	const M = 1 << 20
	for _, tc := range []struct {
		live, base, headroom uint64
		want                 int
	}{
		{0, 0, 4 * M, 25},
		{2 * M, 2 * M, 4 * M, 150},   // the runtime's 4 MiB × percent floor binds: goal 6 MiB
		{4 * M, 4 * M, 4 * M, 100},   // goal 8 MiB
		{8 * M, 8 * M, 4 * M, 50},    // goal 12 MiB
		{15 * M, 15 * M, 4 * M, 26},  // the resolver after the peer harness: 4 MiB, not 7.5
		{64 * M, 64 * M, 4 * M, 25},  // never below 25%
		{8 * M, 8 * M, 32 * M, 400},  // goal 40 MiB
		{8 * M, 16 * M, 32 * M, 200}, // stacks and globals count: goal 8 + 16×2 = 40 MiB
		{1 * M, 3 * M, 12 * M, 325},  // blocked-request load: goal max(1+3×3.25, 4×3.25) = 13 MiB
	} {
		if got := gcPercentFor(tc.live, tc.base, tc.headroom); got != tc.want {
			t.Errorf("live %d MiB, base %d MiB, headroom %d MiB: %d, want %d", tc.live/M, tc.base/M, tc.headroom/M, got, tc.want)
		}
	}
}

// The headroom is a fifth of the last second's allocation, between 4 and
// 64 MiB.
func TestGCTunerHeadroom(t *testing.T) {
	var g gcTuner
	live := uint64(8 << 20)
	allocs := uint64(1 << 30)
	if p := g.step(live, live, allocs); p != 50 || g.headroom != minGCHeadroom {
		t.Fatalf("start: %d%%, headroom %d", p, g.headroom)
	}
	for _, tc := range []struct {
		perSecond uint64 // MiB allocated in the last second
		headroom  uint64 // MiB
		percent   int
	}{
		{0, 4, 50},      // idle
		{20, 4, 50},     // DNS-like: 4 collections a second at the floor
		{100, 20, 250},  // busy proxy: 20 MiB, 5 a second
		{1000, 64, 800}, // list rebuild: capped
		{10, 4, 50},     // quiet again at once
	} {
		allocs += tc.perSecond << 20
		p := g.step(live, live, allocs)
		if g.headroom>>20 != tc.headroom || p != tc.percent {
			t.Errorf("%d MiB/s: headroom %d MiB, %d%%; want %d MiB, %d%%", tc.perSecond, g.headroom>>20, p, tc.headroom, tc.percent)
		}
	}
}

// TestTuneGC: the tuner sets the percent for this process's live heap,
// and GOGC in the environment leaves the runtime alone.
func TestTuneGC(t *testing.T) {
	old := debug.SetGCPercent(17) // below anything the tuner sets
	defer debug.SetGCPercent(old)
	t.Setenv("GOGC", "")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tuneGC(ctx); close(done) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	<-done
	if p := debug.SetGCPercent(100); p < serveGCPercent {
		t.Fatalf("tuner left GC percent %d", p)
	}
	t.Setenv("GOGC", "300")
	debug.SetGCPercent(300)
	tuneGC(context.Background()) // returns at once
	if p := debug.SetGCPercent(300); p != 300 {
		t.Fatalf("GOGC=300 overridden: %d", p)
	}
}

// TestGCHeadroomIsWhatItSays: with the percent the tuner picks, the
// runtime's heap goal is the live heap plus the headroom (the runtime also
// multiplies the stacks and globals by the percent; a small heap beside
// them used to get several times the headroom).
func TestGCHeadroomIsWhatItSays(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	sample := newGCSample()
	goal := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}, {Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/globals:bytes"}}
	const headroom = 4 << 20
	runtime.GC()
	live0, base, _ := readGC(sample)
	debug.SetGCPercent(gcPercentFor(live0, base, headroom))
	metrics.Read(goal)
	g, live, globals := goal[0].Value.Uint64(), goal[1].Value.Uint64(), goal[2].Value.Uint64()
	if live+headroom > 8<<20 || globals == 0 {
		t.Skipf("live heap %d, globals %d: not the small heap this is about", live, globals)
	}
	if got := int64(g - live); got < headroom*95/100 || got > headroom*105/100 {
		t.Errorf("heap goal %d over a live heap of %d (globals %d): headroom %d, want %d", g, live, globals, got, headroom)
	}
}

// TestWriterProcOnce: serve's spare processors are added once per process,
// however often it is called.
func TestWriterProcOnce(t *testing.T) {
	if os.Getenv("GOMAXPROCS") != "" {
		t.Skip("GOMAXPROCS is set: kept as is")
	}
	before := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(before)
	writerProc()
	first := runtime.GOMAXPROCS(0)
	// +2, or nothing when an earlier run in this process added them.
	if d := first - before; d != 2 && d != 0 {
		t.Fatalf("GOMAXPROCS %d → %d, want 2 more (or none the second time)", before, first)
	}
	writerProc()
	if got := runtime.GOMAXPROCS(0); got != first {
		t.Fatalf("a second call changed GOMAXPROCS %d → %d", first, got)
	}
}
