// Package lograte keeps a log line that could repeat for every request or
// packet (a refused client, lost events) to at most one an interval.
package lograte

import (
	"context"
	stdlog "log"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"
)

// Limit allows one line an interval. The zero value allows the first at
// once; it is safe for concurrent use.
type Limit struct{ last atomic.Int64 } // unix nanos of the last line allowed

// Allow reports whether a line may be logged at now: none was allowed in
// the interval every before it.
func (l *Limit) Allow(now time.Time, every time.Duration) bool {
	n, last := now.UnixNano(), l.last.Load()
	return n-last >= int64(every) && l.last.CompareAndSwap(last, n)
}

// Counted is a Limit that counts the lines it held back, so that the line
// it allows can say how many there were (nothing happens unseen). The zero
// value is ready; it is safe for concurrent use.
type Counted struct {
	lim  Limit
	held atomic.Uint64
}

// Allow reports whether a line may be logged at now and, when it may, how
// many were held back since the last one allowed.
func (c *Counted) Allow(now time.Time, every time.Duration) (ok bool, held uint64) {
	if !c.lim.Allow(now, every) {
		c.held.Add(1)
		return false, 0
	}
	return true, c.held.Swap(0)
}

// ServerLog is an http.Server's ErrorLog that writes through log at level
// at most one line every interval, each saying how many were held back
// before it. net/http writes a line for every failed TLS handshake (and
// any client can fail one), and without an ErrorLog it writes them to the
// standard logger, past Gatehouse's level and log.format.
func ServerLog(log *slog.Logger, level slog.Level, every time.Duration) *stdlog.Logger {
	return stdlog.New(&serverLog{log: log, level: level, every: every}, "", 0)
}

type serverLog struct {
	log   *slog.Logger
	level slog.Level
	every time.Duration
	lim   Counted
}

func (w *serverLog) Write(p []byte) (int, error) {
	if ok, held := w.lim.Allow(time.Now(), w.every); ok {
		w.log.Log(context.Background(), w.level, "http server error (logged at most every "+w.every.String()+")",
			"error", strings.TrimSpace(string(p)), "more_since_last_log", held)
	}
	return len(p), nil
}
