package reports

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// spillSegment is the most events one spill file holds; a file is
// replayed in one transaction.
const spillSegment = 50_000

// spill appends batches the database refused to files named
// DB.spill-UNIXNANO.jsonl (one JSON event a line, mode 0600) beside the
// database, fsynced before the batch counts as durable. A file that is
// closed (rotated) waits in segs to be replayed into the database; its name
// is recorded in the spills table in the same transaction, so a crash
// between that commit and the file's removal never replays it twice.
//
// A batch is in a file whole or not at all: a write or fsync that fails
// (a full disk fails it part-way, leaving some of the batch's lines and a
// torn one) is cut off again, back to the end of the batch before, and the
// file is closed, so the batch, held and written again later, is never
// replayed twice and no later line is glued to a torn one. Should the
// cut itself fail, the file is replayed only up to that end.
type spill struct {
	dir, base string
	f         *os.File
	name      string
	n         int        // events in f
	size      int64      // bytes in f: the end of its last whole batch
	segs      []spillSeg // closed files waiting for replay, oldest first
}

// spillSeg is a closed spill file and how much of it holds whole batches
// (-1: all of it; a file of an earlier run, whose writes all completed
// but perhaps the last, torn by a crash: a line without its newline).
type spillSeg struct {
	path string
	size int64
}

func (s *spill) pattern() string { return filepath.Join(s.dir, s.base+".spill-*.jsonl") }

// append writes batch to the current file and fsyncs it.
func (s *spill) append(batch []Event) error {
	for len(batch) > 0 {
		if s.f == nil {
			name := filepath.Join(s.dir, fmt.Sprintf("%s.spill-%020d.jsonl", s.base, time.Now().UnixNano()))
			f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
			if err != nil {
				return err
			}
			s.f, s.name, s.n, s.size = f, name, 0, 0
		}
		k := min(len(batch), spillSegment-s.n)
		cw := &countWriter{w: s.f}
		bw := bufio.NewWriterSize(cw, 64<<10)
		enc := json.NewEncoder(bw)
		var err error
		for i := range batch[:k] {
			if err = enc.Encode(&batch[i]); err != nil {
				break
			}
		}
		if err == nil {
			err = bw.Flush()
		}
		if err == nil {
			err = s.f.Sync()
		}
		if err != nil {
			s.cutShort()
			return err
		}
		s.n += k
		s.size += cw.n
		batch = batch[k:]
		if s.n >= spillSegment {
			s.rotate()
		}
	}
	return nil
}

// cutShort undoes a failed write: the current file is cut back to its
// last whole batch and closed (queued for replay up to there).
func (s *spill) cutShort() {
	if err := s.f.Truncate(s.size); err == nil {
		_ = s.f.Sync()
	}
	s.rotate()
}

// rotate closes the current file, if any, and queues it for replay (a
// file with no batch in it is removed instead).
func (s *spill) rotate() {
	if s.f == nil {
		return
	}
	s.f.Close()
	if s.n == 0 {
		if err := os.Remove(s.name); err != nil {
			s.segs = append(s.segs, spillSeg{s.name, 0})
		}
	} else {
		s.segs = append(s.segs, spillSeg{s.name, s.size})
	}
	s.f, s.name, s.n, s.size = nil, "", 0, 0
}

// countWriter counts the bytes written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// findSpills queues the spill files of an earlier run for replay, and
// removes those already replayed.
func (w *Writer) findSpills() error {
	files, err := filepath.Glob(w.sp.pattern())
	if err != nil {
		return err
	}
	slices.Sort(files)
	for _, f := range files {
		done, err := w.replayed(filepath.Base(f))
		if err != nil {
			return err
		}
		if done {
			w.dropSpill(f)
			continue
		}
		n, err := countLines(f)
		if err != nil {
			return fmt.Errorf("reading spill file %s: %w", f, err)
		}
		w.sp.segs = append(w.sp.segs, spillSeg{f, -1})
		w.spilled.Add(int64(n))
	}
	if len(w.sp.segs) > 0 {
		w.opt.Log.Warn("events from spill files are being replayed into the database", "files", len(w.sp.segs), "events", w.spilled.Load())
	}
	return nil
}

func (w *Writer) replayed(name string) (bool, error) {
	var n int
	err := w.st.db.QueryRow(`SELECT count(*) FROM spills WHERE name = ?`, name).Scan(&n)
	return n > 0, err
}

// dropSpill removes a replayed file and its row.
func (w *Writer) dropSpill(path string) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		w.opt.Log.Error("removing a replayed spill file", "file", path, "err", err)
		return
	}
	if _, err := w.st.db.Exec(`DELETE FROM spills WHERE name = ?`, filepath.Base(path)); err != nil {
		w.opt.Log.Warn("forgetting a replayed spill file", "file", path, "err", err)
	}
}

func countLines(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strings.Count(string(data), "\n"), nil
}

// replayDue reports whether a closed spill file waits and the database may
// be tried.
func (w *Writer) replayDue() bool {
	return len(w.sp.segs) > 0 && (!w.dbFailing || !time.Now().Before(w.retryAt))
}

// replayOne replays the oldest closed spill file.
func (w *Writer) replayOne() {
	seg := w.sp.segs[0]
	path := seg.path
	n, err := w.replay(seg)
	if err != nil {
		w.dbFailed(fmt.Errorf("replaying %s: %w", filepath.Base(path), err))
		return
	}
	w.dbOK()
	w.sp.segs = w.sp.segs[1:]
	w.spilled.Add(-int64(n))
	w.dropSpill(path)
}

// replay writes the events of one spill file in one transaction and
// returns how many lines it had (as countLines counts them). A line that
// does not parse, or a last one without its newline (the end of a write a
// crash cut short, whose events were never reported durable), is skipped
// and logged.
func (w *Writer) replay(seg spillSeg) (int, error) {
	path := seg.path
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var r io.Reader = f
	if seg.size >= 0 {
		r = io.LimitReader(f, seg.size)
	}
	lines, written := 0, 0
	err = w.inTx(true, func(b *batchTx) error {
		br := bufio.NewReaderSize(r, 64<<10)
		for {
			line, err := br.ReadBytes('\n')
			if err == io.EOF {
				if len(line) > 0 {
					w.opt.Log.Warn("skipping the torn last line of a spill file", "file", path, "line", lines+1)
				}
				break
			}
			if err != nil {
				return err
			}
			lines++
			var ev Event
			if err := json.Unmarshal(line, &ev); err != nil {
				w.opt.Log.Warn("skipping a damaged line of a spill file", "file", path, "line", lines, "err", err)
				continue
			}
			if err := w.add(b, &ev); err != nil {
				return err
			}
			written++
		}
		if _, err := b.execSQL(`INSERT OR IGNORE INTO spills (name, ts) VALUES (?, ?)`, filepath.Base(path), ms(time.Now())); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	w.written.Add(uint64(written))
	return lines, nil
}
