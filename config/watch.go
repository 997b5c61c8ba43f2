package config

import (
	"context"
	"crypto/sha256"
	"os"
	"time"
)

// DefaultWatchInterval is Watch's polling interval when it is given 0.
const DefaultWatchInterval = 2 * time.Second

// rehashEvery makes Watch read and hash the file every so many polls even
// when its modification time and size look unchanged (an edit that keeps
// the size, within the file system's timestamp granularity).
const rehashEvery = 15

// Watch polls the configuration file at path every interval until ctx is
// done, and reloads it when its contents change (by SHA-256; the
// modification time and size decide when to read it). It blocks: run it in
// a goroutine.
//
// A change is acted on once the file's modification time and size have
// stayed the same for one interval, so a file caught half-written is not
// reported. A valid new configuration goes to onChange; an invalid one, or
// a file that cannot be read, goes to onError (as Errors) and the caller
// keeps its running configuration. Each problem is reported once, not at
// every poll; returning to the previous good contents calls onChange again.
//
// The first state is taken when Watch starts, so edits made between the
// caller's Load and the call to Watch are not seen until the next edit;
// use NewWatcher right after Load to close that gap. SIGHUP is the
// caller's business (it can simply call Load).
func Watch(ctx context.Context, path string, interval time.Duration, onChange func(*Config), onError func(error)) {
	NewWatcher(path).Run(ctx, interval, onChange, onError)
}

type stamp struct {
	mod  time.Time
	size int64
}

// Watcher holds the state a Watch starts from.
type Watcher struct {
	path       string
	seen, read stamp
	sum        [32]byte
}

// NewWatcher records the file's current state now, so a later Run sees
// every change made after this call.
func NewWatcher(path string) *Watcher {
	w := &Watcher{path: path}
	if fi, err := os.Stat(path); err == nil {
		w.seen = stamp{fi.ModTime(), fi.Size()}
		if data, err := os.ReadFile(path); err == nil {
			w.read, w.sum = w.seen, sha256.Sum256(data)
		}
	}
	return w
}

// Run is Watch from the state NewWatcher recorded; it blocks until ctx is
// done.
func (w *Watcher) Run(ctx context.Context, interval time.Duration, onChange func(*Config), onError func(error)) {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	path := w.path
	seen, read := w.seen, w.read      // last stat, and the stat of the last read
	sum := w.sum                      // hash of the last contents acted on
	lastErr, lastWasRead := "", false // the problem last reported
	report := func(err error, isRead bool) {
		if err.Error() != lastErr {
			lastErr, lastWasRead = err.Error(), isRead
			if onError != nil {
				onError(err)
			}
		}
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fi, err := os.Stat(path)
		if err != nil {
			seen = stamp{}
			report(readError(path, err), true)
			continue
		}
		cur := stamp{fi.ModTime(), fi.Size()}
		if cur != seen {
			seen = cur // changed since the last poll: let it settle
			continue
		}
		if cur == read && n%rehashEvery != 0 {
			continue
		}
		seq := reads.Add(1) // before the files are read (ReadSeq)
		data, err := os.ReadFile(path)
		if err != nil {
			report(readError(path, err), true)
			continue
		}
		read = cur
		if lastWasRead {
			lastErr = "" // readable again
		}
		s := sha256.Sum256(data)
		if s == sum {
			continue
		}
		sum = s
		c, err := Parse(data, path)
		if err != nil {
			report(err, false)
			continue
		}
		c.readSeq = seq
		lastErr = ""
		if onChange != nil {
			onChange(c)
		}
	}
}
