package maproom

import (
	"testing"
	"time"
)

// TestMake: a full map is left one short of its bound, a map below it is
// not touched.
func TestMake(t *testing.T) {
	m := map[int]bool{}
	for i := range 10 {
		m[i] = true
	}
	Make(m, 10)
	if len(m) != 9 {
		t.Fatalf("full map: %d left, want 9", len(m))
	}
	Make(m, 20)
	if len(m) != 9 {
		t.Fatalf("map below its bound: %d left, want 9", len(m))
	}
	Make(m, 4)
	if len(m) != 3 {
		t.Fatalf("map over its bound: %d left, want 3", len(m))
	}
}

// TestSweepAndMake: a full map loses its dead entries first, at most
// once a second, and arbitrary ones only when it is still full.
func TestSweepAndMake(t *testing.T) {
	m := map[int]int{}
	for i := range 10 {
		m[i] = i
	}
	now := time.Unix(1000, 0)
	var swept time.Time
	odd := func(v int) bool { return v%2 == 1 }
	SweepAndMake(m, 10, &swept, now, odd)
	if len(m) != 5 || !swept.Equal(now) {
		t.Fatalf("full map: %d left (want the 5 even ones), swept %v", len(m), swept)
	}
	for k := range m {
		if k%2 == 1 {
			t.Fatalf("dead entry %d kept", k)
		}
	}
	m[1], m[3], m[5], m[7], m[9] = 1, 3, 5, 7, 9
	SweepAndMake(m, 10, &swept, now.Add(time.Second/2), odd) // swept half a second ago: arbitrary ones go
	if len(m) != 9 || !swept.Equal(now) {
		t.Fatalf("full again within the second: %d left (want 9), swept %v", len(m), swept)
	}
	SweepAndMake(m, 20, &swept, now.Add(time.Hour), odd)
	if len(m) != 9 || !swept.Equal(now) {
		t.Fatalf("map below its bound: %d left, swept %v", len(m), swept)
	}
}

// TestShrink: a map that fell under half of its peak is copied and its
// peak reset; one at half or more, or small, is kept.
func TestShrink(t *testing.T) {
	m := map[int]int{}
	peak := 0
	for i := range 4000 {
		m[i] = i
		peak = max(peak, len(m))
	}
	for i := range 2000 {
		delete(m, i)
	}
	if got := Shrink(m, &peak); len(got) != 2000 || peak != 4000 {
		t.Fatalf("half left: %d entries, peak %d; want the map kept (2000, 4000)", len(got), peak)
	}
	delete(m, 2000)
	got := Shrink(m, &peak)
	if len(got) != 1999 || peak != 1999 || got[3500] != 3500 {
		t.Fatalf("under half: %d entries, peak %d, got[3500]=%d; want a copy of 1999, peak 1999", len(got), peak, got[3500])
	}
	got[-1] = -1
	if _, ok := m[-1]; ok {
		t.Fatal("the copy shares the old map")
	}
	small := map[int]int{1: 1}
	p := 1000
	if Shrink(small, &p); p != 1000 {
		t.Fatalf("a map whose peak is under the minimum was rebuilt (peak now %d)", p)
	}
}
