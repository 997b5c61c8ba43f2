//go:build pprof

// Profiling build (go build -tags pprof): serves net/http/pprof on
// 127.0.0.1:6060 for the benchmark scripts. Never in a release build.
package main

import (
	"net/http"
	_ "net/http/pprof"
	"runtime"
)

func init() {
	// Waits of 10 µs and more, and one mutex contention in 5, so that
	// /debug/pprof/block and /debug/pprof/mutex show where requests wait.
	runtime.SetBlockProfileRate(10_000)
	runtime.SetMutexProfileFraction(5)
	// A heap sample every 16 KiB (512 KiB by default), so that
	// /debug/pprof/heap accounts for the live heap to within a few percent.
	runtime.MemProfileRate = 16 << 10
	go func() { _ = http.ListenAndServe("127.0.0.1:6060", nil) }()
}
