package main

import (
	"context"
	"runtime/debug"
	"testing"
	"time"
)

func TestGCPercentFor(t *testing.T) {
	for _, tc := range []struct {
		live, headroom uint64
		want           int
	}{{0, 4 << 20, 50}, {2 << 20, 4 << 20, 200}, {4 << 20, 4 << 20, 100}, {8 << 20, 4 << 20, 50}, {64 << 20, 4 << 20, 50}, {8 << 20, 32 << 20, 400}} {
		if got := gcPercentFor(tc.live, tc.headroom); got != tc.want {
			t.Errorf("live %d MiB, headroom %d MiB: %d, want %d", tc.live>>20, tc.headroom>>20, got, tc.want)
		}
	}
}

// The headroom is a fifth of the last second's allocation, between 4 and
// 64 MiB.
func TestGCTunerHeadroom(t *testing.T) {
	var g gcTuner
	live := uint64(8 << 20)
	allocs := uint64(1 << 30)
	if p := g.step(live, allocs); p != 50 || g.headroom != minGCHeadroom {
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
		p := g.step(live, allocs)
		if g.headroom>>20 != tc.headroom || p != tc.percent {
			t.Errorf("%d MiB/s: headroom %d MiB, %d%%; want %d MiB, %d%%", tc.perSecond, g.headroom>>20, p, tc.headroom, tc.percent)
		}
	}
}

// TestTuneGC: the tuner sets the percent for this process's live heap,
// and GOGC in the environment leaves the runtime alone.
func TestTuneGC(t *testing.T) {
	old := debug.SetGCPercent(37) // below anything the tuner sets
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
