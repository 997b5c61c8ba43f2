package peraddr

import (
	"net/netip"
	"testing"
)

// TestCounts: counts per address, and an address whose count returns to
// zero leaves the map (it cannot grow with addresses that have gone).
func TestCounts(t *testing.T) {
	var c Counts
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	if c.Add(a) != 1 || c.Add(a) != 2 || c.Add(b) != 1 {
		t.Fatal("counts")
	}
	c.Done(a)
	if got := c.Add(a); got != 2 {
		t.Fatalf("a: %d, want 2", got)
	}
	c.Done(a)
	c.Done(a)
	c.Done(b)
	if c.Len() != 0 {
		t.Fatalf("%d addresses left, want 0", c.Len())
	}
}
