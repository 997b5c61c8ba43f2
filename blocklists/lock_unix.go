//go:build unix

package blocklists

import (
	"context"
	"errors"
	"os"
	"syscall"
	"time"
)

// lockPollInterval is how often a held lock is tried again.
const lockPollInterval = 50 * time.Millisecond

// lockFile takes an exclusive advisory lock (flock) on the file at path,
// creating it (0600), waiting while another process, or another manager
// in this one, holds it, until ctx ends. The lock ends with unlock, or
// with the process. The file is left in place: removing it would let two
// lockers hold different files of one name.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	fh, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	fd := int(fh.Fd())
	for {
		err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(fd, syscall.LOCK_UN)
				fh.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			fh.Close()
			return nil, err
		}
		t := time.NewTimer(lockPollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			fh.Close()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}
