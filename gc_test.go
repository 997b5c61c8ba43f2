package main

import (
	"context"
	"runtime/debug"
	"testing"
	"time"
)

func TestGCPercentFor(t *testing.T) {
	for _, tc := range []struct {
		live uint64
		want int
	}{{0, 50}, {2 << 20, 200}, {4 << 20, 100}, {8 << 20, 50}, {64 << 20, 50}} {
		if got := gcPercentFor(tc.live); got != tc.want {
			t.Errorf("live %d MiB: %d, want %d", tc.live>>20, got, tc.want)
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
