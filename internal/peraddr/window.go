package peraddr

import (
	"net/netip"
	"sync"
	"time"
)

// Window counts events per address over a fixed window that starts with
// an address's first event (the proxy's wrong logins, the sign-in page's
// steps). At most Max addresses are counted at once: at the bound, ended
// windows are swept first; if every address is still inside its window,
// a new address is not counted (Add returns 0) unless ForgetWhenFull is
// set, in which case another address's count is forgotten to make room.
// Set the fields before first use.
type Window = Keyed[netip.Addr]

// Keyed is Window for keys of any kind (the proxy's wrong logins per
// user name count a digest of the name).
type Keyed[K comparable] struct {
	Span           time.Duration
	Max            int
	ForgetWhenFull bool

	mu sync.Mutex
	m  map[K]windowCount
}

type windowCount struct {
	n     int
	since time.Time
}

// Add counts one event of a at now and returns a's count in its current
// window, or 0 when a could not be counted (full; see Window).
func (w *Keyed[K]) Add(a K, now time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = map[K]windowCount{}
	}
	c, ok := w.m[a]
	if !ok || now.Sub(c.since) >= w.Span {
		if !ok && len(w.m) >= w.Max {
			w.sweepLocked(now)
			if w.ForgetWhenFull {
				for k := range w.m {
					if len(w.m) < w.Max {
						break
					}
					delete(w.m, k)
				}
			}
			if len(w.m) >= w.Max {
				return 0
			}
		}
		c = windowCount{since: now}
	}
	c.n++
	w.m[a] = c
	return c.n
}

// Count returns a's count in its window at now (0 when it has none or it
// has ended).
func (w *Keyed[K]) Count(a K, now time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.m[a]
	if !ok || now.Sub(c.since) >= w.Span {
		return 0
	}
	return c.n
}

// Sweep forgets the windows ended at now.
func (w *Keyed[K]) Sweep(now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sweepLocked(now)
}

func (w *Keyed[K]) sweepLocked(now time.Time) {
	for k, c := range w.m {
		if now.Sub(c.since) >= w.Span {
			delete(w.m, k)
		}
	}
}

// Len is how many addresses are counted.
func (w *Keyed[K]) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.m)
}
