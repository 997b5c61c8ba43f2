// Package lowprio runs background work on an OS thread of idle CPU
// priority, so that the kernel gives the CPU at once to any other thread
// of the process (a DNS worker woken by a query) instead of letting the
// background work finish its time slice first.
//
// Why: on a small machine the event writer's SQLite commits take a few
// milliseconds of CPU each. At the normal priority a query's thread,
// woken meanwhile, waited for the commit's slice (Linux lets a running
// thread reach its slice, up to a few ms, before a woken one of equal
// priority preempts it): the DNS tail after a burst was two to three
// times bare miekg/dns's. At idle priority (Linux SCHED_IDLE) the commit
// yields at once and runs in the gaps between queries.
//
// Enter lowers only the calling goroutine's thread, which the goroutine
// keeps (runtime.LockOSThread) until it exits: Go then ends that thread,
// so no other goroutine ever runs at idle priority. Lowering a priority
// needs no privilege; raising it again does, so a goroutine that must run
// at the normal priority again hands its work to a new goroutine and
// exits. RunDelay tells such a goroutine when the CPU is so busy that the
// thread is starved (SCHED_IDLE gets the CPU only when nothing else
// wants it). Pause hands the CPU over between pieces of work: Linux does
// not always preempt an idle thread at once, so long pieces still delay
// other threads, by up to a scheduler tick.
package lowprio

import "time"

// Enter locks the calling goroutine to its OS thread and lowers that
// thread to idle priority. It reports whether it did; on false nothing
// changed (the goroutine is not locked). After true the goroutine must
// not call runtime.UnlockOSThread: it keeps the thread until it exits,
// and Go then ends the thread.
func Enter() bool { return enter() }

// RunDelay is how long the calling thread has waited for a CPU while
// runnable, since it started (Linux schedstat); ok is false where that is
// not known.
func RunDelay() (d time.Duration, ok bool) { return runDelay() }

// Pause sleeps the calling thread for a moment (tens of microseconds),
// so that the kernel runs any thread waiting for this CPU. A thread at
// idle priority calls it between pieces of its work: Linux does not
// always preempt an idle thread for one that wants the CPU, and until the
// next scheduler tick (4 ms at 250 Hz) that thread waits.
func Pause() { pause() }

// Lowered lists the process's threads at idle priority (thread ids), for
// tests and diagnostics; nil where that is not known.
func Lowered() []int { return lowered() }
