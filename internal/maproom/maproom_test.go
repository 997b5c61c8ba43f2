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
