// Package peraddr counts per client address: what each has open
// (Counts: the proxy's per-client connection cap and the sign-in page's
// connections per address) and how many events each had in a window
// (Window: the proxy's wrong logins and the sign-in page's steps).
package peraddr

import (
	"net/netip"
	"sync"
)

// Counts is a count per address; an address leaves the map when its count
// returns to zero, so the map holds only addresses with something open.
// The zero value is ready to use.
type Counts struct {
	mu sync.Mutex
	n  map[netip.Addr]int64
}

// Add counts one more for a and returns a's new count.
func (c *Counts) Add(a netip.Addr) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[netip.Addr]int64{}
	}
	c.n[a]++
	return c.n[a]
}

// Done counts one fewer for a.
func (c *Counts) Done(a netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[a]--; c.n[a] <= 0 {
		delete(c.n, a)
	}
}

// Len is how many addresses have something open.
func (c *Counts) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.n)
}
