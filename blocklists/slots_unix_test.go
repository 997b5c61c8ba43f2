//go:build unix

package blocklists

import (
	"runtime"
	"testing"
	"time"
)

// TestSlotsOutsideHeapFreed: the hash table is mapped outside the Go heap
// and unmapped once its Index is unreachable, never while it is in use.
func TestSlotsOutsideHeapFreed(t *testing.T) {
	build := func() *Index {
		b := NewBuilder(0)
		_, sink, err := b.AddList(ListInfo{Name: "l", Category: Gambling})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{"a.example", "b.example", "c.example"} {
			sink.Domain([]byte(d), ModeSubtree)
		}
		ix, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		return ix
	}
	keep := build()
	if keep.Stats().OffHeap == 0 {
		t.Fatal("table not mapped outside the heap")
	}
	before := slotsFreed.Load()
	func() { _ = build() }()
	deadline := time.Now().Add(30 * time.Second)
	for slotsFreed.Load() == before {
		if time.Now().After(deadline) {
			t.Fatal("the table of an unreachable index was never freed")
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if keep.Lookup("www.b.example") == 0 {
		t.Fatal("the index still in use lost its table")
	}
}
