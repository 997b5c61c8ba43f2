package lowprio

import (
	"bytes"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"
	"unsafe"
)

// schedIdle is SCHED_IDLE (syscall does not name it).
const schedIdle = 5

func enter() bool {
	runtime.LockOSThread()
	var param struct{ priority int32 }
	// pid 0: the calling thread.
	if _, _, errno := syscall.RawSyscall(syscall.SYS_SCHED_SETSCHEDULER, 0, schedIdle, uintptr(unsafe.Pointer(&param))); errno != 0 {
		runtime.UnlockOSThread()
		return false
	}
	return true
}

// policy is the calling thread's scheduling policy (for tests).
func policy() int {
	p, _, errno := syscall.RawSyscall(syscall.SYS_SCHED_GETSCHEDULER, 0, 0, 0)
	if errno != 0 {
		return -1
	}
	return int(p)
}

// pause sleeps the thread itself (nanosleep, not a Go timer: the
// goroutine keeps its thread and no other thread is woken). The kernel's
// timer slack (50 µs by default) makes a 1 µs sleep a few tens of µs.
func pause() {
	ts := syscall.Timespec{Nsec: 1000}
	_ = syscall.Nanosleep(&ts, nil)
}

func runDelay() (time.Duration, bool) {
	// /proc/thread-self/schedstat: time on a CPU, time waiting for one,
	// time slices (nanoseconds, nanoseconds, count).
	b, err := os.ReadFile("/proc/thread-self/schedstat")
	if err != nil {
		return 0, false
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(f[1]), 10, 64)
	if err != nil {
		return 0, false
	}
	return time.Duration(n), true
}

func lowered() []int {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil
	}
	var ids []int
	for _, e := range tasks {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := taskPolicy(tid); ok && p == schedIdle {
			ids = append(ids, tid)
		}
	}
	return ids
}

// taskPolicy reads a thread's scheduling policy: field 41 of its stat.
func taskPolicy(tid int) (int, bool) {
	b, err := os.ReadFile("/proc/self/task/" + strconv.Itoa(tid) + "/stat")
	if err != nil {
		return 0, false // ended meanwhile
	}
	// The command name (field 2) is in parentheses and may hold any byte.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 > len(b) {
		return 0, false
	}
	f := bytes.Fields(b[i+2:]) // field 3 onwards
	if len(f) <= 41-3 {
		return 0, false
	}
	p, err := strconv.Atoi(string(f[41-3]))
	return p, err == nil
}
