package reports

import (
	"context"
	"database/sql/driver"
	"fmt"
	"os"
	"time"
)

// The writer's commits never checkpoint the WAL themselves (its
// connection's wal_autocheckpoint is 0). SQLite's automatic checkpoint runs
// inside the commit that takes the WAL past 1,000 pages: it copies them
// into the database file and fsyncs it, milliseconds of work, and that
// commit could be one a pupil's held block answer waits for (or a lazy one
// the held commit waits behind). The checkpointer does it instead, on a
// connection of the pool, every checkpointEvery while commits happen:
// PASSIVE, which neither waits for the writer nor blocks it.
//
// With Options.Background it runs on a thread of idle priority, as the
// committer does, and moves to the normal priority while that thread is
// starved (the CPU saturated), so the WAL never grows for long: a
// checkpoint copies 700-1,100 pages a second under a steady stream of
// repeat counts, 3-8 ms of CPU, and at the normal priority the DNS answers
// that came meanwhile waited for it (the slow answers of a round at
// 10,000 queries a second clustered at the checkpoints' times).
var checkpointEvery = time.Second

// walTruncateBytes: a WAL file this large is truncated. SQLite reuses the
// file from its start once a checkpoint has copied every frame, but never
// shrinks it: the first 15 s of the peer harness's DNS load (20,000 new
// blocked names, each a held commit, on two saturated cores, the
// idle-priority checkpointer starved) left a 117 MB file for a 12 MB
// database, kept at that size until restart. The file's size is what
// counts, not the frames in use: a log started again from its beginning
// (after a checkpoint of another connection, say) keeps the file as large.
var walTruncateBytes int64 = 64 << 20

// walTruncateWait is how long the truncating checkpoint waits for a commit
// under way or a reader to finish: commits wait behind it that long at most,
// plus the copy of what the PASSIVE checkpoint just before it left. When
// it is not enough it gives up, and is tried again a second later.
const walTruncateWait = 100 * time.Millisecond

// checkpointState is the checkpointer's, carried over when it moves
// thread.
type checkpointState struct {
	background bool // Options.Background: the thread's priority follows the CPU's load
	thread     committerState
	last       uint64 // commits and replayed events at the last checkpoint
	truncate   bool   // the WAL's file is to be truncated: the last try found it locked
}

// checkpointer runs until the writer stops, or until it has handed over
// to a goroutine on a thread of the other priority (committerState.move).
func (w *Writer) checkpointer(st *checkpointState, idle bool, every time.Duration) {
	if st.background && st.thread.enter(idle) {
		w.ckptIdle.Add(1)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			close(w.ckptDone)
			return
		case <-t.C:
		}
		if st.background {
			if move, _, _ := st.thread.move(); move {
				if st.thread.idle {
					w.ckptMoves.Add(1)
				}
				go w.checkpointer(st, !st.thread.idle, every)
				return
			}
		}
		n := w.commits.Load() + w.written.Load() // replays write without counting a commit
		if n == st.last && !st.truncate {
			continue
		}
		st.last = n
		var busy, frames, done int
		err := w.st.db.QueryRowContext(context.Background(), "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &done)
		st.truncate = false
		if fi, serr := os.Stat(w.st.path + "-wal"); err == nil && serr == nil && fi.Size() >= walTruncateBytes {
			st.truncate, err = w.truncateWAL()
			st.truncate = st.truncate || err != nil
		}
		if err == nil {
			w.checkpoints.Add(1)
		} else if w.ckptLog.Allow(time.Now(), time.Minute) {
			w.opt.Log.Warn("checkpointing the database's write-ahead log failed; retrying every second", "err", err)
		}
	}
}

// truncateWAL checkpoints the whole WAL and truncates it, on a connection
// of the pool that waits at most walTruncateWait for the lock, and
// reports whether it was locked out (to be tried again a second later,
// with or without commits meanwhile).
func (w *Writer) truncateWAL() (locked bool, err error) {
	ctx := context.Background()
	c, err := w.st.db.Conn(ctx)
	if err != nil {
		return false, err
	}
	defer c.Close()
	if _, err := c.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", walTruncateWait.Milliseconds())); err != nil {
		return false, err
	}
	var busy, frames, done int
	err = c.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &frames, &done)
	if _, rerr := c.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", busyTimeout.Milliseconds())); rerr != nil {
		// Not back in the pool with the short wait, where a commit would
		// give up on a lock after 100 ms: the pool drops a bad connection.
		_ = c.Raw(func(any) error { return driver.ErrBadConn })
		if err == nil {
			err = rerr
		}
	}
	if err == nil && busy == 0 {
		w.walTruncations.Add(1)
	}
	return busy != 0, err
}
