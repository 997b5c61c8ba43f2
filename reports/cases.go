package reports

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
)

// Case records: what the DSL did about an incident. An incident's
// assignee, outcome and closing time are columns of incidents; every
// assignment, note and status change is a row of case_log with its
// author and time. The SQL here is plain (no SQLite-only syntax) so that
// a second backend (PostgreSQL) can run the same statements.

// Case statuses as the console shows them. A closed case is an
// acknowledged incident: closing sets alerted_count to the count, as
// Acknowledge does, so the next attempt reopens it and is alerted.
const (
	CaseOpen   = "open"
	CaseClosed = "closed"
)

// Outcomes a closed case records.
var Outcomes = []string{
	"spoken to pupil",
	"parents informed",
	"referred to MASH/police",
	"no further action",
	"false positive: list corrected",
}

// ValidOutcome reports whether o is one of Outcomes.
func ValidOutcome(o string) bool {
	for _, x := range Outcomes {
		if o == x {
			return true
		}
	}
	return false
}

// Case is an incident with its case record.
type Case struct {
	Incident
	Assignee string
	Outcome  string
	Closed   time.Time // zero: never closed
}

// State is open or closed.
func (c *Case) State() string {
	if c.Status == StatusAcknowledged {
		return CaseClosed
	}
	return CaseOpen
}

// Reopened reports whether the case was closed and is open again.
func (c *Case) Reopened() bool { return !c.Closed.IsZero() && c.Status != StatusAcknowledged }

// What says what was attempted in plain words, never a restricted name.
func (i *Incident) What() string { return i.whatText() }

// WhoText is the incident's person, device, address and group in one line.
func (i *Incident) WhoText() string { return i.whoText() }

// Advice is what the school should do about the incident.
func (i *Incident) Advice() string { return advice(i) }

// CaseEntry is one row of an incident's case log.
type CaseEntry struct {
	Time   time.Time
	Author string
	Kind   string // assign, note, status, reopened
	Before string
	After  string
}

// ErrNoIncident is returned for an incident that does not exist.
var ErrNoIncident = errors.New("no such incident")

// IncidentQuery selects a page of incidents.
type IncidentQuery struct {
	Since, Until time.Time   // last attempt in [Since, Until); Until zero: no end
	Severity     bl.Severity // exactly this severity; 0 with AnySeverity false means info
	AnySeverity  bool
	State        string // CaseOpen, CaseClosed or "" for both
	Route        string // "" for all; "headteacher" for staff incidents
	Who          string // user:NAME, device:NAME or ip:ADDR; "" for all
	Bypass       bool   // only filter-bypass attempts
	Offset       int
	Limit        int // default 50
}

func (q *IncidentQuery) where() (string, []any) {
	w := []string{"last_ts >= ?"}
	args := []any{ms(q.Since)}
	if !q.Until.IsZero() {
		w, args = append(w, "last_ts < ?"), append(args, ms(q.Until))
	}
	if !q.AnySeverity {
		w, args = append(w, "severity = ?"), append(args, int(q.Severity))
	}
	switch q.State {
	case CaseOpen:
		w, args = append(w, "status <> ?"), append(args, StatusAcknowledged)
	case CaseClosed:
		w, args = append(w, "status = ?"), append(args, StatusAcknowledged)
	}
	if q.Route != "" {
		w, args = append(w, "route = ?"), append(args, q.Route)
	}
	if q.Who != "" {
		w, args = append(w, "who = ?"), append(args, q.Who)
	}
	if q.Bypass {
		w = append(w, "bypass = 1")
	}
	return strings.Join(w, " AND "), args
}

const caseCols = incidentCols + `, assignee, outcome, closed_ts`

func scanCase(r scanner) (Case, error) {
	var c Case
	var closed int64
	in, err := scanIncident(r, &c.Assignee, &c.Outcome, &closed)
	if err != nil {
		return c, err
	}
	c.Incident = in
	if closed > 0 {
		c.Closed = fromMS(closed)
	}
	return c, nil
}

// IncidentPage returns one page of the incidents q selects, newest first,
// and how many there are in all.
func (s *Store) IncidentPage(q IncidentQuery) ([]Case, int, error) {
	if q.Limit <= 0 {
		q.Limit = 50
	}
	where, args := q.where()
	var total int
	if err := s.db.QueryRow(`SELECT count(*) FROM incidents WHERE `+where, args...).Scan(&total); err != nil {
		return nil, 0, err
	}
	rows, err := s.db.Query(`SELECT `+caseCols+` FROM incidents WHERE `+where+` ORDER BY last_ts DESC, id DESC LIMIT ? OFFSET ?`,
		append(args, q.Limit, max(q.Offset, 0))...)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var out []Case
	for rows.Next() {
		c, err := scanCase(rows)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, c)
	}
	return out, total, rows.Err()
}

// Attention lists the open incidents at or above sev, most severe and
// newest first, at most limit.
func (s *Store) Attention(sev bl.Severity, route string, limit int) ([]Case, error) {
	q := `SELECT ` + caseCols + ` FROM incidents WHERE status <> ? AND severity >= ?`
	args := []any{StatusAcknowledged, int(sev)}
	if route != "" {
		q, args = q+` AND route = ?`, append(args, route)
	}
	rows, err := s.db.Query(q+` ORDER BY severity DESC, last_ts DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Case
	for rows.Next() {
		c, err := scanCase(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// Case returns one incident with its case record.
func (s *Store) Case(id int64) (Case, error) {
	c, err := scanCase(s.db.QueryRow(`SELECT `+caseCols+` FROM incidents WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return c, ErrNoIncident
	}
	return c, err
}

// CaseLog returns an incident's case log, oldest first.
func (s *Store) CaseLog(id int64) ([]CaseEntry, error) {
	rows, err := s.db.Query(`SELECT ts, author, kind, before_text, after_text FROM case_log WHERE incident_id = ? ORDER BY ts, id`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []CaseEntry
	for rows.Next() {
		var e CaseEntry
		var ts int64
		if err := rows.Scan(&ts, &e.Author, &e.Kind, &e.Before, &e.After); err != nil {
			return nil, err
		}
		e.Time = fromMS(ts)
		out = append(out, e)
	}
	return out, rows.Err()
}

// caseChange runs change in a transaction after reading the case, then
// logs the change (kind, before, after) with its author.
func (s *Store) caseChange(id int64, author, kind string, now time.Time, change func(tx *sql.Tx, c *Case) (before, after string, err error)) (before, after string, err error) {
	tx, err := s.db.Begin()
	if err != nil {
		return "", "", err
	}
	defer tx.Rollback()
	c, err := scanCase(tx.QueryRow(`SELECT `+caseCols+` FROM incidents WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", ErrNoIncident
	}
	if err != nil {
		return "", "", err
	}
	if before, after, err = change(tx, &c); err != nil {
		return "", "", err
	}
	if _, err := tx.Exec(`INSERT INTO case_log (incident_id, ts, author, kind, before_text, after_text) VALUES (?, ?, ?, ?, ?, ?)`,
		id, ms(now), author, kind, before, after); err != nil {
		return "", "", err
	}
	if _, err := tx.Exec(`UPDATE incidents SET case_ts = ? WHERE id = ? AND case_ts = 0`, ms(now), id); err != nil {
		return "", "", err
	}
	return before, after, tx.Commit()
}

// Assign gives the case to an account ("" to nobody); it returns the
// assignee before.
func (s *Store) Assign(id int64, author, to string, now time.Time) (before string, err error) {
	before, _, err = s.caseChange(id, author, "assign", now, func(tx *sql.Tx, c *Case) (string, string, error) {
		_, err := tx.Exec(`UPDATE incidents SET assignee = ? WHERE id = ?`, to, id)
		return c.Assignee, to, err
	})
	return before, err
}

// MaxNote is the longest case note kept.
const MaxNote = 8000

// AddNote adds a case note.
func (s *Store) AddNote(id int64, author, text string, now time.Time) error {
	text = strings.TrimSpace(text)
	if text == "" {
		return errors.New("the note is empty")
	}
	if len(text) > MaxNote {
		return fmt.Errorf("the note is longer than %d characters", MaxNote)
	}
	_, _, err := s.caseChange(id, author, "note", now, func(*sql.Tx, *Case) (string, string, error) { return "", text, nil })
	return err
}

// SetState opens or closes a case. Closing needs an outcome and marks the
// attempts so far as dealt with, exactly as Acknowledge does: the next
// attempt at or above the alert severity reopens the incident and is
// alerted (Alerter.Check). Reopening by hand keeps the alerts as they are.
// It returns the state and outcome before and after ("closed: outcome").
func (s *Store) SetState(id int64, author, state, outcome string, now time.Time) (before, after string, err error) {
	return s.SetStateSeen(id, author, state, outcome, -1, now)
}

// ErrNewAttempts is SetStateSeen's refusal to close an incident that has
// attempts the closing page did not show.
var ErrNewAttempts = errors.New("the incident has new attempts since it was shown")

// SetStateSeen is SetState from a page that showed seen attempts:
// closing marks the attempts so far as dealt with, so it is refused with
// ErrNewAttempts when the incident has more than seen (an attempt made
// while the page was open would be closed unseen and never alerted).
// seen < 0 closes whatever the count (the command line's --ack).
func (s *Store) SetStateSeen(id int64, author, state, outcome string, seen int64, now time.Time) (before, after string, err error) {
	switch {
	case state == CaseClosed && !ValidOutcome(outcome):
		return "", "", fmt.Errorf("closing needs an outcome, one of: %s", strings.Join(Outcomes, "; "))
	case state != CaseClosed && state != CaseOpen:
		return "", "", fmt.Errorf("unknown state %q", state)
	}
	return s.caseChange(id, author, "status", now, func(tx *sql.Tx, c *Case) (string, string, error) {
		before := stateText(c.State(), c.Outcome)
		if state == CaseClosed && seen >= 0 && c.Count != seen {
			return "", "", fmt.Errorf("%w (%d shown, %d now)", ErrNewAttempts, seen, c.Count)
		}
		var err error
		if state == CaseClosed {
			_, err = tx.Exec(`UPDATE incidents SET status = ?, alerted_count = count, acked_ts = ?, closed_ts = ?, outcome = ? WHERE id = ?`,
				StatusAcknowledged, ms(now), ms(now), outcome, id)
		} else {
			st := c.Status
			if st == StatusAcknowledged {
				st = StatusAlerted
				if c.lastAlert == 0 {
					st = StatusNew
				}
			}
			_, err = tx.Exec(`UPDATE incidents SET status = ?, outcome = '' WHERE id = ?`, st, id)
			outcome = ""
		}
		return before, stateText(state, outcome), err
	})
}

func stateText(state, outcome string) string {
	if outcome == "" {
		return state
	}
	return state + ": " + outcome
}

// SentAlert is a mail about an incident.
type SentAlert struct {
	Created    time.Time
	Sent       time.Time // zero: not yet delivered
	Role       string
	Recipients string
	Subject    string
	LastError  string
}

// Alerts lists the alerts queued for an incident, oldest first.
func (s *Store) Alerts(id int64) ([]SentAlert, error) {
	rows, err := s.db.Query(`SELECT created_ts, sent_ts, role, recipients, subject, last_error FROM outbox WHERE incident_id = ? ORDER BY created_ts, id`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []SentAlert
	for rows.Next() {
		var a SentAlert
		var created, sent int64
		if err := rows.Scan(&created, &sent, &a.Role, &a.Recipients, &a.Subject, &a.LastError); err != nil {
			return nil, err
		}
		a.Created = fromMS(created)
		if sent > 0 {
			a.Sent = fromMS(sent)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// MailStatus is the outbox at a glance.
type MailStatus struct {
	Pending   int       // queued, not yet accepted by the server
	Failing   int       // of those, tried and failed at least once
	Oldest    time.Time // the oldest pending message (zero: none)
	LastSent  time.Time // zero: nothing sent yet
	LastError string
}

// Mail returns the outbox's state.
func (s *Store) Mail() (MailStatus, error) {
	var m MailStatus
	var oldest, last sql.NullInt64
	if err := s.db.QueryRow(`SELECT count(*), coalesce(sum(CASE WHEN attempts > 0 THEN 1 ELSE 0 END), 0), min(created_ts) FROM outbox WHERE sent_ts = 0`).
		Scan(&m.Pending, &m.Failing, &oldest); err != nil {
		return m, err
	}
	if err := s.db.QueryRow(`SELECT max(sent_ts) FROM outbox WHERE sent_ts > 0`).Scan(&last); err != nil {
		return m, err
	}
	if oldest.Valid {
		m.Oldest = fromMS(oldest.Int64)
	}
	if last.Valid {
		m.LastSent = fromMS(last.Int64)
	}
	err := s.db.QueryRow(`SELECT last_error FROM outbox WHERE sent_ts = 0 AND last_error <> '' ORDER BY next_ts DESC LIMIT 1`).Scan(&m.LastError)
	if errors.Is(err, sql.ErrNoRows) {
		err = nil
	}
	return m, err
}

// DayCount is the number of incidents of one theme on one day.
type DayCount struct {
	Day   time.Time // midnight in the location asked for
	Theme string
	N     int
}

// Themes counts incidents by day (of their last attempt, in loc) and
// theme (the category's plain title, "a site on the IWF list" for the
// restricted tier) over [since, until).
func (s *Store) Themes(since, until time.Time, route string, loc *time.Location) ([]DayCount, error) {
	q := `SELECT last_ts, category, restricted FROM incidents WHERE last_ts >= ? AND last_ts < ?`
	args := []any{ms(since), ms(until)}
	if route != "" {
		q, args = q+` AND route = ?`, append(args, route)
	}
	rows, err := s.db.Query(q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	type key struct {
		day   time.Time
		theme string
	}
	counts := map[key]int{}
	var order []key
	for rows.Next() {
		var ts int64
		var cat string
		var restricted int
		if err := rows.Scan(&ts, &cat, &restricted); err != nil {
			return nil, err
		}
		in := Incident{Category: cat, Restricted: restricted != 0}
		t := fromMS(ts).In(loc)
		k := key{time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc), in.whatText()}
		if counts[k] == 0 {
			order = append(order, k)
		}
		counts[k]++
	}
	out := make([]DayCount, 0, len(order))
	for _, k := range order {
		out = append(out, DayCount{Day: k.day, Theme: k.theme, N: counts[k]})
	}
	return out, rows.Err()
}

// IncidentEvents lists an incident's attempts, oldest first, at most limit.
func (s *Store) IncidentEvents(id int64, limit int) ([]StoredEvent, error) {
	return s.queryEvents(`SELECT `+eventCols+` FROM events WHERE incident_id = ? ORDER BY ts, id LIMIT ?`, id, limit)
}

// WhoEvents lists the blocked attempts of one person, device or address
// (who as incidents have it: user:NAME, device:NAME or ip:ADDR) in
// [since, until), oldest first, at most limit. It reads them through the
// person's incidents (incidents_who, events_incident): no index on events
// is needed for it.
func (s *Store) WhoEvents(who string, since, until time.Time, limit int) ([]StoredEvent, error) {
	if _, _, err := whoColumn(who); err != nil {
		return nil, err
	}
	return s.queryEvents(`SELECT `+eventCols+` FROM events WHERE incident_id IN
		(SELECT id FROM incidents WHERE who = ? AND last_ts >= ? AND first_ts < ?) AND ts >= ? AND ts < ? ORDER BY ts, id LIMIT ?`,
		who, ms(since), ms(until), ms(since), ms(until), limit)
}

// AroundEvents lists everything recorded for a client address or user
// (with full logging: every query) in [since, until), oldest first, at
// most limit. It reads the period's events by time (events_kind_ts) and
// keeps the client's: its cost is the school's events in the period.
func (s *Store) AroundEvents(client, user string, since, until time.Time, limit int) ([]StoredEvent, error) {
	return s.queryEvents(`SELECT `+eventCols+` FROM events WHERE kind IN (1, 2, 3) AND ts >= ? AND ts < ?
		AND (client = ? OR (user <> '' AND user = ?)) ORDER BY ts, id LIMIT ?`, ms(since), ms(until), client, user, limit)
}

// whoColumn checks an incident's who.
func whoColumn(who string) (col, val string, err error) {
	kind, val, ok := strings.Cut(who, ":")
	if ok && val != "" {
		switch kind {
		case "user":
			return "user", val, nil
		case "device":
			return "device", val, nil
		case "ip":
			return "client", val, nil
		}
	}
	return "", "", fmt.Errorf("%q is not user:NAME, device:NAME or ip:ADDRESS", who)
}

func (s *Store) queryEvents(q string, args ...any) ([]StoredEvent, error) {
	rows, err := s.db.Query(q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []StoredEvent
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// caseExpired selects the incidents whose case record has outlived keep.
const caseExpired = `SELECT id FROM incidents WHERE case_ts > 0 AND last_ts < ? AND closed_ts < ? LIMIT 5000`

// purgeCases deletes case records (incidents the DSL acted on, their case
// log and their events) whose last attempt and closing are older than
// keep; keep 0 keeps them.
func (s *Store) purgeCases(ctx context.Context, now time.Time, keep time.Duration) (int64, error) {
	if keep <= 0 {
		return 0, nil
	}
	cut := ms(now.Add(-keep))
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		var n int64
		for _, q := range []string{
			`DELETE FROM events WHERE incident_id IN (` + caseExpired + `)`,
			`DELETE FROM case_log WHERE incident_id IN (` + caseExpired + `)`,
			`DELETE FROM incidents WHERE id IN (` + caseExpired + `)`,
		} {
			res, err := s.db.ExecContext(ctx, q, cut, cut)
			if err != nil {
				return total, err
			}
			n, _ = res.RowsAffected()
			total += n
		}
		if n < 5000 { // the last statement's count: incidents
			return total, nil
		}
	}
}
