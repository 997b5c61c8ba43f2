package peraddr

import (
	"net/netip"
	"testing"
	"time"
)

// TestWindow: counts per address within a window from its first event,
// starting again once it has ended; at the bound, ended windows make room,
// and then a new address is either not counted or counted in the place of
// another, as ForgetWhenFull says. The map never exceeds Max.
func TestWindow(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}) }
	for _, forget := range []bool{false, true} {
		w := &Window{Span: time.Minute, Max: 3, ForgetWhenFull: forget}
		for i := 1; i <= 4; i++ {
			if n := w.Add(addr(0), t0.Add(time.Duration(i)*time.Second)); n != i {
				t.Fatalf("forget %v: event %d counted as %d", forget, i, n)
			}
		}
		if w.Count(addr(0), t0.Add(30*time.Second)) != 4 || w.Count(addr(0), t0.Add(61*time.Second)) != 0 || w.Count(addr(9), t0) != 0 {
			t.Fatalf("forget %v: Count inside, after and unknown", forget)
		}
		if n := w.Add(addr(0), t0.Add(61*time.Second)); n != 1 {
			t.Fatalf("forget %v: a new window counted %d", forget, n)
		}
		w.Add(addr(1), t0.Add(62*time.Second))
		w.Add(addr(2), t0.Add(63*time.Second))
		// Full, every window open: the fourth address.
		n := w.Add(addr(3), t0.Add(64*time.Second))
		if forget && n != 1 || !forget && n != 0 {
			t.Fatalf("forget %v: a new address at the bound counted %d", forget, n)
		}
		if w.Len() > 3 {
			t.Fatalf("forget %v: %d addresses, bound 3", forget, w.Len())
		}
		// Ended windows make room for anyone.
		if n := w.Add(addr(4), t0.Add(200*time.Second)); n != 1 || w.Len() != 1 {
			t.Fatalf("forget %v: after the windows ended: count %d, %d addresses", forget, n, w.Len())
		}
		w.Sweep(t0.Add(300 * time.Second))
		if w.Len() != 0 {
			t.Fatalf("forget %v: %d left after Sweep", forget, w.Len())
		}
	}
}
