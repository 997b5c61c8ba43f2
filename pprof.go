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
	go func() { _ = http.ListenAndServe("127.0.0.1:6060", nil) }()
}
