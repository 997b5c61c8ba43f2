// Package maproom keeps maps that a client can grow within a bound.
package maproom

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
