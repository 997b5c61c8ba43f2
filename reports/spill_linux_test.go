package reports

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestSpillWriteCutShortNotReplayedTwice: a spill write the disk cut
// short (full: here the file size limit, which fails the write part-way
// as ENOSPC does) leaves part of its batch in the file, the last event
// torn. The batch is not durable and is written again later; the part
// left behind must not be replayed as well (an event stored twice, its
// incident counted twice), nor may the torn line swallow an event written
// after it. Every event ends up in the database exactly once.
func TestSpillWriteCutShortNotReplayedTwice(t *testing.T) {
	st, w := testWriter(t, Options{})
	unlock := lockDB(t, st.Path())
	t0 := time.Now().UTC()
	for i := range 10 {
		w.Record(ev(t0.Add(time.Duration(i)*time.Millisecond), "10.1.0.1", "students", "pornography", fmt.Sprintf("a%d.example", i)))
	}
	w.Flush()
	files, _ := filepath.Glob(st.Path() + ".spill-*.jsonl")
	if len(files) != 1 || w.Spilled() != 10 {
		t.Fatalf("spill files %v, %d spilled; want one file of 10", files, w.Spilled())
	}
	fi, err := os.Stat(files[0])
	if err != nil {
		t.Fatal(err)
	}
	line := fi.Size() / 10

	// The next batch finds room for one and a half of its lines.
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	lim := old
	lim.Cur = uint64(fi.Size() + line*3/2)
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Skipf("cannot limit the file size: %v", err)
	}
	for i := range 10 {
		w.Record(ev(t0.Add(time.Duration(10+i)*time.Millisecond), "10.1.0.1", "students", "pornography", fmt.Sprintf("b%d.example", i)))
	}
	w.Flush()
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	// The file holds whole batches only, and what is counted as spilled
	// is what it holds: the first 10, and the second batch's first event
	// when the writer took it in a batch of its own, which fitted.
	files, _ = filepath.Glob(st.Path() + ".spill-*.jsonl")
	var lines int
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) > 0 && data[len(data)-1] != '\n' {
			t.Errorf("%s ends in a torn line", f)
		}
		lines += bytes.Count(data, []byte("\n"))
	}
	if n := w.Spilled(); n != int64(lines) || n < 10 || n > 11 {
		t.Fatalf("%d spilled after the cut-short write, %d whole lines in the files; want the first 10 (and at most one more that fitted)", n, lines)
	}
	// More events come while the spill file is retried (appended to it,
	// if nothing rotated it meanwhile), then the database is back.
	waitFor(t, "the spill file taking events again", func() bool {
		w.Record(ev(time.Now().UTC(), "10.1.0.1", "students", "pornography", fmt.Sprintf("c%d.example", time.Now().UnixNano())))
		w.Flush()
		return w.queued() == 0
	})
	unlock()
	waitFor(t, "everything stored", func() bool {
		w.Flush()
		files, _ := filepath.Glob(st.Path() + ".spill-*.jsonl")
		return len(files) == 0 && w.queued() == 0
	})
	w.Close()
	all := count(t, st, "SELECT count(*) FROM events")
	distinct := count(t, st, "SELECT count(DISTINCT name) FROM events")
	if all != distinct || count(t, st, "SELECT count(*) FROM events WHERE name LIKE 'a%' OR name LIKE 'b%'") != 20 {
		t.Errorf("%d events stored for %d names; a and b: %d, want 20 each once", all, distinct,
			count(t, st, "SELECT count(*) FROM events WHERE name LIKE 'a%' OR name LIKE 'b%'"))
	}
	if sum := count(t, st, "SELECT COALESCE(SUM(count),0) FROM incidents"); sum != all {
		t.Errorf("incidents count %d attempts, %d events stored", sum, all)
	}
	if w.Spilled() != 0 {
		t.Errorf("%d counted as spilled after the replay", w.Spilled())
	}
}
