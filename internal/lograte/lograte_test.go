package lograte

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLimit: one line an interval, the first at once, and of many callers
// at one instant only one is allowed.
func TestLimit(t *testing.T) {
	var l Limit
	t0 := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	if !l.Allow(t0, 10*time.Second) {
		t.Fatal("the first line was not allowed")
	}
	if l.Allow(t0.Add(9*time.Second), 10*time.Second) {
		t.Fatal("a second line within the interval was allowed")
	}
	if !l.Allow(t0.Add(10*time.Second), 10*time.Second) {
		t.Fatal("a line an interval later was not allowed")
	}
	var n atomic.Int32
	var wg sync.WaitGroup
	at := t0.Add(time.Minute)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if l.Allow(at, 10*time.Second) {
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	if n.Load() != 1 {
		t.Fatalf("%d of 50 simultaneous lines allowed, want 1", n.Load())
	}
}

// TestCounted: the line allowed after an interval says how many were held
// back since the last one.
func TestCounted(t *testing.T) {
	var c Counted
	t0 := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	if ok, held := c.Allow(t0, 10*time.Second); !ok || held != 0 {
		t.Fatalf("first: %v %d", ok, held)
	}
	for i := range 5 {
		if ok, _ := c.Allow(t0.Add(time.Duration(i)*time.Second), 10*time.Second); ok {
			t.Fatal("a line within the interval was allowed")
		}
	}
	if ok, held := c.Allow(t0.Add(10*time.Second), 10*time.Second); !ok || held != 5 {
		t.Fatalf("after the interval: %v %d, want true 5", ok, held)
	}
	if ok, held := c.Allow(t0.Add(20*time.Second), 10*time.Second); !ok || held != 0 {
		t.Fatalf("the next: %v %d, want true 0", ok, held)
	}
}
