//go:build !unix

package blocklists

// newSlots returns an ordinary slice where anonymous mappings are not
// available (see slots_unix.go).
func newSlots(n int) (slots []uint64, mem []byte) { return make([]uint64, n), nil }

func freeSlots([]byte) {}
