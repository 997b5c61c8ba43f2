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
