package reports

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
)

// Roles holds the recipients by role.
type Roles map[string][]string

// resolve picks the role that receives a route: the route's own role when
// it has addresses, else the DSL (nothing is dropped for want of an
// address).
func (r Roles) resolve(route string) string {
	if route == "" || route == string(bl.RouteDSL) || len(r[route]) > 0 {
		if route == "" {
			return string(bl.RouteDSL)
		}
		return route
	}
	return string(bl.RouteDSL)
}

// covers reports whether a digest for role includes incidents resolved to
// target: custom roles (deputies, governors) get what the DSL gets.
func (r Roles) covers(role, target string) bool {
	if role == target {
		return true
	}
	builtin := role == string(bl.RouteDSL) || role == string(bl.RouteIT) || role == string(bl.RouteHeadteacher)
	return !builtin && target == string(bl.RouteDSL)
}

// Alerter mails incidents at or above the alert severity as soon as the
// writer stores them, at most once per client and category in the
// de-duplication window; attempts after an alert are counted and told in a
// follow-up once the window has passed.
type Alerter struct {
	st     *Store
	opt    Options
	roles  Roles
	r      renderer
	mailer *Mailer
	wake   chan struct{}
	health failState // the last pass's failure, for /healthz (HealthChecks)
}

// NewAlerter makes an alerter; Run checks on Wake and every interval.
func NewAlerter(st *Store, opt Options, roles Roles, school string, loc *time.Location, m *Mailer) *Alerter {
	opt.fill()
	if loc == nil {
		loc = time.UTC
	}
	return &Alerter{st: st, opt: opt, roles: roles, r: renderer{school: school, loc: loc, console: opt.ConsoleURL}, mailer: m, wake: make(chan struct{}, 1)}
}

// Wake makes Run check now (the writer calls it after high events).
func (a *Alerter) Wake() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// Run checks for due alerts until ctx is done. interval bounds how late a
// follow-up can be (default 15s).
func (a *Alerter) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = 15 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := a.Check(ctx)
		if err != nil && ctx.Err() == nil {
			a.opt.Log.Error("checking alerts", "err", err)
		}
		if n > 0 && a.mailer != nil {
			a.mailer.Wake() // the alerts queued, even beside an incident that failed
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.wake:
		}
	}
}

// Check queues every alert that is due, and the mail of new "report a
// mistake" forms to IT when one is due (mistakes.go), and returns how many.
func (a *Alerter) Check(ctx context.Context) (int, error) {
	now := a.opt.Now()
	// Incidents whose client+category was alerted inside the window are left
	// out here, without a write transaction (alertOne checks again in one).
	// An acknowledged incident with attempts after its acknowledgement
	// (Acknowledge sets alerted_count to the count) is reopened and alerted
	// as a new one; its earlier alert does not hold the new one back.
	from, to := a.dedupWindow(now)
	rows, err := a.st.db.QueryContext(ctx, `SELECT id FROM incidents i
		WHERE count > alerted_count AND severity >= ? AND route != 'none'
		AND NOT EXISTS (SELECT 1 FROM incidents j WHERE j.who = i.who AND j.category = i.category AND j.last_alert_ts > ? AND j.last_alert_ts < ? AND j.status != ?)
		ORDER BY severity DESC, first_ts`,
		int(a.opt.AlertSeverity), from, to, StatusAcknowledged)
	if err != nil {
		return 0, err
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	// One incident that cannot be alerted (a row that does not read, a
	// failed transaction) must not hold back the others behind it: each is
	// tried, and the errors are returned together (the pass is tried
	// again a few seconds later).
	sent := 0
	var errs []error
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return sent, err
		}
		ok, err := a.alertOne(ctx, id, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("incident %d: %w", id, err))
			continue
		}
		if ok {
			sent++
		}
	}
	if ok, err := a.mailMistakes(ctx, now); err != nil {
		errs = append(errs, err)
	} else if ok {
		sent++
	}
	err = errors.Join(errs...)
	if err != nil && ctx.Err() == nil {
		a.health.fail(err, now)
	} else if err == nil {
		a.health.ok()
	}
	return sent, err
}

// dedupWindow is the range of last_alert_ts (exclusive, ms) that holds
// back an alert at now: an alert within AlertDedup before now, or one
// stamped up to AlertDedup after it (the clock has stepped back since).
// An alert stamped further ahead (the clock was that far fast when it
// went, and was then set right) holds nothing back: the window would
// otherwise last as long as the step, hours of serious attempts unmailed.
func (a *Alerter) dedupWindow(now time.Time) (from, to int64) {
	return ms(now.Add(-a.opt.AlertDedup)), ms(now.Add(a.opt.AlertDedup))
}

// alertOne queues an alert for incident id if the de-duplication window
// allows, in the same transaction that records it on the incident.
func (a *Alerter) alertOne(ctx context.Context, id int64, now time.Time) (bool, error) {
	tx, err := a.st.db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	// Read inside the transaction: the writer may have added attempts.
	cur, err := scanIncident(tx.QueryRowContext(ctx, `SELECT `+incidentCols+` FROM incidents WHERE id = ?`, id))
	if err != nil {
		return false, err
	}
	if cur.Count <= cur.alerted {
		return false, nil // alerted or acknowledged meanwhile
	}
	from, to := a.dedupWindow(now)
	var within bool
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM incidents WHERE who = ? AND category = ? AND status != ? AND last_alert_ts > ? AND last_alert_ts < ?)`,
		cur.Who, cur.Category, StatusAcknowledged, from, to).Scan(&within); err != nil {
		return false, err
	}
	if within {
		return false, nil // within the window: the follow-up will count these
	}
	attempts := cur.Count - cur.alerted
	reopened := cur.Status == StatusAcknowledged
	followUp := cur.alerted > 0 && !reopened
	subject, text, html, err := a.r.alert(&cur, attempts, followUp, reopened, fromMS(cur.lastAlert))
	if err != nil {
		return false, err
	}
	role := a.roles.resolve(cur.Route)
	m := &Message{Kind: "alert", Role: role, Recipients: slices.Clone(a.roles[role]), Subject: subject, Text: text, HTML: html, Incident: cur.ID}
	key := fmt.Sprintf("alert-%d-%d", cur.ID, cur.Count)
	if err := enqueue(tx, m, key, now); err != nil {
		return false, err
	}
	status := cur.Status
	if status == StatusNew || reopened {
		status = StatusAlerted
	}
	if _, err := tx.ExecContext(ctx, `UPDATE incidents SET alerted_count = ?, last_alert_ts = ?, status = ? WHERE id = ?`,
		cur.Count, ms(now), status, cur.ID); err != nil {
		return false, err
	}
	if reopened {
		// The case log says the closed case was reopened, and why.
		if _, err := tx.ExecContext(ctx, `INSERT INTO case_log (incident_id, ts, author, kind, before_text, after_text) VALUES (?, ?, ?, ?, ?, ?)`,
			cur.ID, ms(now), "gatehouse", "reopened", CaseClosed, fmt.Sprintf("open: %d new attempt(s) after it was closed; alerted again", attempts)); err != nil {
			return false, err
		}
	}
	if err := tx.Commit(); err != nil {
		return false, err
	}
	a.opt.Log.Info("alert queued", "incident", cur.ID, "severity", cur.Severity.String(), "category", cur.Category, "role", role, "follow_up", followUp, "reopened", reopened)
	return true, nil
}
