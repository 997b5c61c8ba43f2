// Package maproom keeps maps that a client can grow within a bound.
package maproom

import "time"

// Make deletes arbitrary entries of m (Go's map order is random) until it
// holds fewer than max, so that one new key fits within max. A caller
// that first sweeps what it can (expired entries) calls it for the rest.
func Make[K comparable, V any](m map[K]V, max int) {
	for k := range m {
		if len(m) < max {
			return
		}
		delete(m, k)
	}
}

// SweepAndMake makes room for one new key in m when it holds max: it
// first deletes the entries dead reports true for, if a second has passed
// since *swept (the last such sweep, which it updates: a full map of live
// entries is not walked for every new key), then arbitrary ones (Make).
func SweepAndMake[K comparable, V any](m map[K]V, max int, swept *time.Time, now time.Time, dead func(V) bool) {
	if len(m) < max {
		return
	}
	if now.Sub(*swept) >= time.Second {
		*swept = now
		for k, v := range m {
			if dead(v) {
				delete(m, k)
			}
		}
	}
	Make(m, max)
}

// Shrink returns m, or when it holds under half of *peak (the most
// entries since it was last rebuilt, which the caller keeps with
// max(*peak, len(m)) as keys are added) a copy sized to its entries, and
// *peak set to that size. A Go map keeps the room of the most entries it
// ever held: one a burst grew stays that size after the burst is over,
// and one whose keys leave a few at a time while new ones come (windows
// ending in turn) never empties enough for a lower bar. The copy costs a
// pass over the entries left, at most once each time the map has halved.
// Maps smaller than shrinkMin are left alone.
func Shrink[K comparable, V any](m map[K]V, peak *int) map[K]V {
	if *peak < shrinkMin || len(m) >= *peak/2 {
		return m
	}
	c := make(map[K]V, len(m))
	for k, v := range m {
		c[k] = v
	}
	*peak = len(c)
	return c
}

// shrinkMin is the peak below which Shrink keeps a map: rebuilding a small
// one gives back little.
const shrinkMin = 1024
