//go:build unix

package blocklists

import (
	"sync/atomic"
	"syscall"
	"unsafe"
)

// slotsFreed counts freed tables (for tests).
var slotsFreed atomic.Int64

// newSlots returns a zeroed table of n slots mapped outside the Go heap
// (anonymous memory), and the mapping to free once the index is
// unreachable. The table is large, long-lived and holds no pointers: on the
// heap it would only make the garbage collector let the heap grow by as
// much again before collecting (GOGC), and the heap would double during a
// rebuild. If the mapping fails, an ordinary slice is returned (mem nil).
func newSlots(n int) (slots []uint64, mem []byte) {
	if n == 0 {
		return nil, nil
	}
	b, err := syscall.Mmap(-1, 0, n*8, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return make([]uint64, n), nil
	}
	return unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(b))), n), b
}

func freeSlots(mem []byte) {
	if syscall.Munmap(mem) == nil {
		slotsFreed.Add(1)
	}
}
