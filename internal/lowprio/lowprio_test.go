package lowprio

import (
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestEnterLowersOnlyItsThread: a goroutine that entered runs at idle
// priority on a thread of its own, which ends when the goroutine exits;
// the other goroutines' threads keep the normal priority.
func TestEnterLowersOnlyItsThread(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("idle priority is Linux's SCHED_IDLE")
	}
	type result struct {
		tid, policy int
		ok          bool
	}
	got := make(chan result)
	start := func(release chan struct{}) result {
		go func() {
			ok := Enter()
			got <- result{syscall.Gettid(), policy(), ok}
			<-release
		}()
		return <-got
	}
	keep := make(chan struct{})
	defer close(keep)
	lowered := map[int]bool{} // before this test (a wedged main thread) or by it
	for _, tid := range Lowered() {
		lowered[tid] = true
	}
	own := make(chan struct{})
	r := start(own)
	if r.tid == os.Getpid() && !lowered[r.tid] {
		// The main thread cannot end (Go parks it for ever instead, never
		// to run another goroutine): keep it and enter on another thread.
		lowered[r.tid] = true
		own = keep
		own2 := make(chan struct{})
		r, own = start(own2), own2
	}
	if !r.ok || r.policy != schedIdle {
		t.Fatalf("Enter: ok %v, policy %d; want true, SCHED_IDLE (%d)", r.ok, r.policy, schedIdle)
	}
	lowered[r.tid] = true
	for _, tid := range Lowered() {
		if !lowered[tid] {
			t.Errorf("thread %d is at idle priority; only the entered threads %v should be", tid, lowered)
		}
	}
	close(own)
	// The goroutine exited locked: Go ends its thread rather than reuse it.
	for i := 0; ; i++ {
		if _, err := os.Stat("/proc/self/task/" + strconv.Itoa(r.tid)); os.IsNotExist(err) {
			break
		}
		if i == 2000 {
			t.Fatalf("thread %d of idle priority still exists after its goroutine exited", r.tid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRunDelayGrows: a thread that waits for a CPU, here while more
// goroutines than CPUs spin, sees its run delay grow.
func TestRunDelayGrows(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("schedstat is Linux's")
	}
	if _, err := os.Stat("/proc/thread-self/schedstat"); err != nil {
		t.Skip("no schedstat:", err)
	}
	done := make(chan struct{})
	got := make(chan time.Duration)
	go func() {
		if !Enter() {
			got <- -1
			return
		}
		d0, _ := RunDelay()
		// Busy threads of normal priority, one per CPU, while this one
		// (idle priority) wants the CPU too: it waits.
		var stop atomic.Bool
		for range runtime.NumCPU() {
			go func() {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				for !stop.Load() {
				}
			}()
		}
		for d := d0; ; {
			d, _ = RunDelay()
			if d-d0 >= 10*time.Millisecond {
				stop.Store(true)
				got <- d - d0
				break
			}
		}
		<-done
	}()
	d := <-got
	close(done)
	if d < 0 {
		t.Skip("SCHED_IDLE refused here")
	}
}
