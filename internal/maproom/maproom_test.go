package maproom

import "testing"

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
