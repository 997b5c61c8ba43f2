package reports

import (
	"context"
	"time"
)

// The writer's commits never checkpoint the WAL themselves (its
// connection's wal_autocheckpoint is 0). SQLite's automatic checkpoint runs
// inside the commit that takes the WAL past 1,000 pages: it copies them
// into the database file and fsyncs it, milliseconds of work, and that
// commit could be one a pupil's held block answer waits for (or a lazy one
// the held commit waits behind). The checkpointer does it instead, on a
// connection of the pool, every checkpointEvery while commits happen:
// PASSIVE, which neither waits for the writer nor blocks it. It runs at the
// normal priority (the work is mostly writes and an fsync), so the WAL
// never grows for long: at most a second of commits.
var checkpointEvery = time.Second

// checkpointer runs until the writer stops.
func (w *Writer) checkpointer(every time.Duration) {
	defer close(w.ckptDone)
	t := time.NewTicker(every)
	defer t.Stop()
	var last uint64
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		n := w.commits.Load() + w.written.Load() // replays write without counting a commit
		if n == last {
			continue
		}
		last = n
		var busy, frames, done int
		err := w.st.db.QueryRowContext(context.Background(), "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &done)
		if err == nil {
			w.checkpoints.Add(1)
		} else if w.ckptLog.Allow(time.Now(), time.Minute) {
			w.opt.Log.Warn("checkpointing the database's write-ahead log failed; retrying every second", "err", err)
		}
	}
}
