package blocklists

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// A local list file is read only once it looks finished: IT's editor or a
// cp over it truncates the file and then writes, and a build that read it
// in between would load the first part only (enough of it passes the
// min_ratio guard) and unblock the rest until the next reload or refresh,
// since nothing re-reads the file when the writer finishes.
// settleAge: a file modified more recently than this is read only once
// its size and modification time stay the same across a re-check this far
// apart. (A variable so that this package's tests, which rewrite files
// and reload at once, wait less.)
var settleAge = time.Second

const (
	// settleMax bounds the waiting of one build (every local file in it);
	// a file still changing after that is taken as being written.
	settleMax = 10 * time.Second
	// buildAttempts is how often a build is started again when a local
	// file changed while it was being read.
	buildAttempts = 3
)

// errFileChanged says a local file changed while it was read: the build
// starts again (up to buildAttempts) rather than load what was read.
var errFileChanged = errors.New("changed while it was being read")

// errStillWriting says a local file kept changing for settleMax.
var errStillWriting = errors.New("still being written")

// buildRun is what one build attempt knows about itself.
type buildRun struct {
	strict   bool                 // running lists exist to keep (see build)
	last     bool                 // the last attempt: a file changing during its read is not retried
	settleBy time.Time            // when waiting for files to settle stops
	stamps   map[string]fileStamp // the local files read by this attempt, as they were
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func statStamp(path string) (fileStamp, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, false
	}
	return fileStamp{fi.ModTime(), fi.Size()}, true
}

// settle waits until the file at path looks finished (see settleAge) or
// until by, and returns its stamp; errStillWriting if it was still
// changing at by. A file that cannot be stat'ed is returned at once for
// the read to report.
func settle(path string, by time.Time) (fileStamp, error) {
	cur, ok := statStamp(path)
	if !ok {
		return fileStamp{}, nil
	}
	for {
		age := time.Since(cur.mod)
		if age >= settleAge {
			return cur, nil
		}
		wait := settleAge - age
		if age < 0 || wait > settleAge {
			wait = settleAge // modified "in the future" (clock skew): a plain re-check
		}
		if time.Now().Add(wait).After(by) {
			return cur, fmt.Errorf("%s: %w (it changed in the last %s)", path, errStillWriting, settleAge)
		}
		time.Sleep(wait)
		next, ok := statStamp(path)
		if !ok || next == cur {
			return next, nil
		}
		cur = next
	}
}
