package reports

import (
	"context"
	"database/sql"
	"encoding/json"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
)

// Event kinds as stored.
const (
	kindBreach   = 1 // a block or bypass attempt: grouped into incidents
	kindProbe    = 2 // an automatic probe: counted, never reported
	kindQueryLog = 3 // an allowed or rewritten request (full logging)
	kindReport   = 4 // a "report a mistake" form (mistakes.go)
)

// Flags as stored.
const (
	flagRestricted = 1
	flagBypass     = 2
	flagProbe      = 4
)

// Options are the settings the writer, alerter and digests share.
type Options struct {
	IncidentWindow     time.Duration // default 30m
	Samples            int           // default 5
	StaffToHeadteacher bool
	StaffGroups        []string
	AlertSeverity      bl.Severity   // default high
	AlertDedup         time.Duration // default 10m
	MistakeMailEvery   time.Duration // at most one "report a mistake" mail to IT per this (default 5m)
	QueueSize          int           // default 10000
	MaxBatch           int           // default 5000
	Log                *slog.Logger
	Now                func() time.Time // for tests; default time.Now
}

func (o *Options) fill() {
	if o.IncidentWindow <= 0 {
		o.IncidentWindow = 30 * time.Minute
	}
	if o.Samples <= 0 {
		o.Samples = 5
	}
	if o.AlertSeverity == 0 {
		o.AlertSeverity = bl.SeverityHigh
	}
	if o.AlertDedup <= 0 {
		o.AlertDedup = 10 * time.Minute
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 10_000
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 5000
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Writer is the event sink: a bounded queue drained by one goroutine that
// inserts events in batched transactions and keeps incidents up to date.
// Low-severity events are dropped when the queue is full; high and
// critical ones are always queued. The queue is a slice that grows as
// events arrive and is swapped out whole by the writer, so an idle writer
// holds no buffer.
type Writer struct {
	st  *Store
	opt Options

	mu       sync.Mutex
	queue    []Event
	wake     chan struct{}
	stop     chan struct{}
	done     chan struct{}
	closed   atomic.Bool
	once     sync.Once
	flushReq chan chan struct{}

	dropped atomic.Uint64
	written atomic.Uint64
	health  failState // the last commit's failure, if it failed (health.go)

	// Alertable, if set, is called (from the writer goroutine) after a
	// batch that holds events at or above the alert severity.
	Alertable func()

	open map[incKey]*openIncident // incidents still inside the window
}

type incKey struct{ who, category string }

type openIncident struct {
	id       int64
	last     int64
	count    int64
	severity bl.Severity
	samples  []string
	dirty    bool
}

// NewWriter starts a writer on st.
func NewWriter(st *Store, opt Options) (*Writer, error) {
	opt.fill()
	w := &Writer{st: st, opt: opt, wake: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{}), flushReq: make(chan chan struct{}),
		open: map[incKey]*openIncident{}}
	if err := w.loadOpen(); err != nil {
		return nil, err
	}
	go w.run()
	return w, nil
}

// loadOpen reads the incidents still inside the window, so that events
// after a restart join them.
func (w *Writer) loadOpen() error {
	since := ms(w.opt.Now().Add(-w.opt.IncidentWindow))
	rows, err := w.st.db.Query(`SELECT id, who, category, last_ts, count, severity, samples FROM incidents WHERE last_ts >= ?`, since)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var o openIncident
		var who, cat, samples string
		var sev int
		if err := rows.Scan(&o.id, &who, &cat, &o.last, &o.count, &sev, &samples); err != nil {
			return err
		}
		o.severity = bl.Severity(sev)
		_ = json.Unmarshal([]byte(samples), &o.samples)
		k := incKey{who, cat}
		if cur := w.open[k]; cur == nil || cur.last < o.last {
			w.open[k] = &o
		}
	}
	return rows.Err()
}

// Record queues ev without blocking. It returns false only when a
// low-severity event was dropped because the queue was full, or when the
// writer is closed.
func (w *Writer) Record(ev Event) bool {
	if w.closed.Load() {
		return false
	}
	Redact(&ev)
	w.mu.Lock()
	if len(w.queue) >= w.opt.QueueSize && ev.Severity < bl.SeverityHigh && !ev.Restricted && ev.Action != ActionReport {
		w.mu.Unlock()
		w.dropped.Add(1)
		return false
	}
	w.queue = append(w.queue, ev)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return true
}

// Dropped is how many low-severity events were dropped so far.
func (w *Writer) Dropped() uint64 { return w.dropped.Load() }

// Written is how many events were committed so far.
func (w *Writer) Written() uint64 { return w.written.Load() }

// Flush returns once every event recorded before the call is committed.
func (w *Writer) Flush() {
	if w.closed.Load() {
		return
	}
	ch := make(chan struct{})
	select {
	case w.flushReq <- ch:
		<-ch
	case <-w.done:
	}
}

// Close writes everything queued and stops the writer. Front doors must
// stop calling Record first; later events are refused.
func (w *Writer) Close() {
	w.once.Do(func() {
		w.closed.Store(true)
		close(w.stop)
		<-w.done
	})
}

func (w *Writer) run() {
	defer close(w.done)
	purge := time.NewTicker(time.Minute)
	defer purge.Stop()
	var spare []Event
	for {
		var flushed chan struct{}
		stopping := false
		select {
		case <-w.wake:
		case flushed = <-w.flushReq:
		case <-purge.C:
			w.forgetClosed()
			continue
		case <-w.stop:
			stopping = true
		}
		// Everything queued so far, and what arrives while committing.
		for {
			w.mu.Lock()
			all := w.queue
			if len(all) == 0 {
				w.queue, spare = nil, nil // idle: hold no buffer
				w.mu.Unlock()
				break
			}
			w.queue = spare
			w.mu.Unlock()
			for batch := all; len(batch) > 0; {
				n := min(len(batch), w.opt.MaxBatch)
				w.commit(batch[:n])
				batch = batch[n:]
			}
			// Reuse a well-filled buffer for the next drain.
			spare = nil
			if len(all) >= cap(all)/4 && cap(all) <= w.opt.QueueSize {
				clear(all) // drop the strings
				spare = all[:0]
			}
		}
		if flushed != nil {
			close(flushed)
		}
		if stopping {
			return
		}
	}
}

// commit writes a batch, retrying until the database takes it: a full
// disk or a locked file must not lose high-severity events.
func (w *Writer) commit(batch []Event) {
	for attempt := 0; ; attempt++ {
		alert, err := w.write(batch)
		if err == nil {
			w.health.ok()
			w.written.Add(uint64(len(batch)))
			if alert && w.Alertable != nil {
				w.Alertable()
			}
			return
		}
		w.health.fail(err, w.opt.Now())
		w.reload()
		w.opt.Log.Error("writing events failed; retrying", "events", len(batch), "attempt", attempt+1, "err", err)
		select {
		case <-time.After(min(time.Duration(attempt+1)*time.Second, 30*time.Second)):
		case <-w.stop:
			if attempt >= 3 {
				w.opt.Log.Error("events lost at shutdown: the database refused them", "events", len(batch))
				return
			}
		}
	}
}

// reload forgets the in-memory incidents after a failed transaction (their
// ids may have been rolled back) and reads them again.
func (w *Writer) reload() {
	w.open = map[incKey]*openIncident{}
	if err := w.loadOpen(); err != nil {
		w.opt.Log.Error("reading open incidents", "err", err)
	}
}

func (w *Writer) forgetClosed() {
	cut := ms(w.opt.Now().Add(-w.opt.IncidentWindow))
	for k, o := range w.open {
		if o.last < cut && !o.dirty {
			delete(w.open, k)
		}
	}
}

const insertEvent = `INSERT INTO events (ts, kind, source, protocol, client, device, user, grp, name, qtype, url, search,
	method, status, bytes, action, reason, category, severity, route, list, entry, flags, count, incident_id, ref, note)
	VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`

func (w *Writer) write(batch []Event) (alert bool, err error) {
	tx, err := w.st.db.BeginTx(context.Background(), nil)
	if err != nil {
		return false, err
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	ins, err := tx.Prepare(insertEvent)
	if err != nil {
		return false, err
	}
	defer ins.Close()
	newInc, err := tx.Prepare(`INSERT INTO incidents (who, client, device, user, grp, category, severity, route, restricted, bypass,
		first_ts, last_ts, count, samples) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)`)
	if err != nil {
		return false, err
	}
	defer newInc.Close()
	var touched []*openIncident
	for i := range batch {
		ev := &batch[i]
		kind, route, sev := w.classify(ev)
		if kind == kindReport {
			alert = true // mailed to IT by the alerter (mistakes.go)
		}
		ts := ms(ev.Time)
		if ev.Time.IsZero() {
			ts = ms(w.opt.Now())
		}
		n := int64(max(ev.Count, 1))
		var flags int
		if ev.Restricted {
			flags |= flagRestricted
		}
		if ev.Bypass {
			flags |= flagBypass
		}
		if ev.Probe {
			flags |= flagProbe
		}
		var incID sql.NullInt64
		if kind == kindBreach && route != bl.RouteNone {
			if sev >= w.opt.AlertSeverity {
				alert = true
			}
			who := whoKey(ev)
			k := incKey{who, ev.Category}
			o := w.open[k]
			if o != nil && ts-o.last > w.opt.IncidentWindow.Milliseconds() {
				o = nil
			}
			sample := sampleOf(ev)
			if o == nil {
				var samples []string
				if sample != "" {
					samples = []string{sample}
				}
				sj, _ := json.Marshal(nonNil(samples))
				res, err := newInc.Exec(who, clientStr(ev), ev.Device, ev.User, ev.Group, ev.Category, int(sev), string(route),
					b2i(ev.Restricted), b2i(ev.Bypass), ts, ts, n, string(sj))
				if err != nil {
					return false, err
				}
				id, err := res.LastInsertId()
				if err != nil {
					return false, err
				}
				o = &openIncident{id: id, last: ts, count: n, severity: sev, samples: samples}
				w.open[k] = o
			} else {
				o.count += n
				o.last = max(o.last, ts)
				o.severity = max(o.severity, sev)
				if sample != "" && len(o.samples) < w.opt.Samples && !slices.Contains(o.samples, sample) {
					o.samples = append(o.samples, sample)
				}
				if !o.dirty {
					o.dirty = true
					touched = append(touched, o)
				}
			}
			incID = sql.NullInt64{Int64: o.id, Valid: true}
		}
		if _, err := ins.Exec(ts, kind, ev.Source, ev.Protocol, clientStr(ev), ev.Device, ev.User, ev.Group, ev.Name, ev.QType,
			ev.URL, ev.SearchTerm, ev.Method, ev.Status, ev.Bytes, ev.Action, ev.Reason, ev.Category, int(sev), string(route),
			ev.List, ev.Entry, flags, n, incID, ev.Ref, ev.Note); err != nil {
			return false, err
		}
	}
	if len(touched) > 0 {
		upd, err := tx.Prepare(`UPDATE incidents SET last_ts = ?, count = ?, severity = ?, samples = ? WHERE id = ?`)
		if err != nil {
			return false, err
		}
		defer upd.Close()
		for _, o := range touched {
			sj, _ := json.Marshal(nonNil(o.samples))
			if _, err := upd.Exec(o.last, o.count, int(o.severity), string(sj), o.id); err != nil {
				return false, err
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return false, err
	}
	for _, o := range touched {
		o.dirty = false
	}
	return alert, nil
}

// classify works out an event's kind, report route and severity.
func (w *Writer) classify(ev *Event) (kind int, route bl.Route, sev bl.Severity) {
	sev = ev.Severity
	cat, catErr := bl.ParseCategory(ev.Category)
	switch {
	case ev.Action == ActionReport:
		return kindReport, bl.RouteIT, sev
	case ev.Probe || (catErr == nil && cat.Info().Kind == bl.KindProbe):
		return kindProbe, bl.RouteNone, sev
	case ev.Action == "block" || ev.Action == "flag" || ev.Bypass || ev.Restricted:
		kind = kindBreach
	default:
		// Allowed and rewritten requests (full logging) and the proxy's
		// "report a mistake" forms are stored, never reported.
		return kindQueryLog, "", sev
	}
	route = ev.Route
	if route == "" {
		route = bl.RouteDSL
		if catErr == nil {
			route = cat.Info().Route
		}
	}
	if ev.Restricted || (catErr == nil && cat.Restricted()) {
		sev = bl.SeverityCritical
		if route == bl.RouteNone {
			route = bl.RouteDSL
		}
	}
	if w.opt.StaffToHeadteacher && route == bl.RouteDSL && slices.Contains(w.opt.StaffGroups, ev.Group) {
		route = bl.RouteHeadteacher
	}
	return kind, route, sev
}

// whoKey names the client: the user if known, else the device, else the
// IP address.
func whoKey(ev *Event) string {
	switch {
	case ev.User != "":
		return "user:" + ev.User
	case ev.Device != "":
		return "device:" + ev.Device
	}
	return "ip:" + clientStr(ev)
}

func clientStr(ev *Event) string {
	if !ev.Client.IsValid() {
		return ""
	}
	return ev.Client.String()
}

// sampleOf is what an incident keeps as an example: the search term, else
// the URL, else the name. Nothing for the restricted tier.
func sampleOf(ev *Event) string {
	if ev.Restricted {
		return ""
	}
	if cat, err := bl.ParseCategory(ev.Category); err == nil && cat.Restricted() {
		return ""
	}
	switch {
	case ev.SearchTerm != "":
		return "search: " + ev.SearchTerm
	case ev.URL != "":
		return ev.URL
	}
	return ev.Name
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
