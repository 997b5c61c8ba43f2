package reports

import (
	"context"
	"log/slog"
	"sync/atomic"
)

// LogSink writes events to a structured log: the stand-in until the event
// store is wired in. Probes and allowed queries (query log) go at debug
// level, everything else at info.
type LogSink struct {
	Log      *slog.Logger
	recorded atomic.Uint64
}

// Record logs e at info level (debug for probes and allowed queries). It
// never drops an event.
func (s *LogSink) Record(e Event) bool {
	s.recorded.Add(1)
	Redact(&e)
	level := slog.LevelInfo
	switch {
	case e.Action == "allow" || e.Probe:
		level = slog.LevelDebug
	}
	s.Log.LogAttrs(context.Background(), level, "event",
		slog.Time("time", e.Time), slog.String("source", e.Source), slog.String("protocol", e.Protocol),
		slog.String("client", e.Client.String()), slog.String("device", e.Device), slog.String("user", e.User),
		slog.String("group", e.Group), slog.String("name", e.Name), slog.String("qtype", e.QType),
		slog.String("action", e.Action), slog.String("reason", e.Reason), slog.String("category", e.Category),
		slog.String("severity", e.Severity.String()), slog.String("list", e.List), slog.String("entry", e.Entry),
		slog.Bool("bypass", e.Bypass), slog.Int("count", e.Count))
	return true
}

// Recorded counts the events logged.
func (s *LogSink) Recorded() uint64 { return s.recorded.Load() }
