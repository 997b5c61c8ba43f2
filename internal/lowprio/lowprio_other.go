//go:build !linux

package lowprio

import "time"

func enter() bool { return false }

func policy() int { return -1 }

func runDelay() (time.Duration, bool) { return 0, false }

func lowered() []int { return nil }

func pause() { time.Sleep(time.Microsecond) }
