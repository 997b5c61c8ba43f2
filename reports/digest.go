package reports

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/robfig/cron/v3"
)

// Schedule is one configured digest.
type Schedule struct {
	Name  string
	Spec  string // cron spec, with CRON_TZ= for the school's zone
	Roles []string
	sched cron.Schedule
}

// MaxListed is how many incidents a digest lists in full; the rest are
// counted (the CLI lists them all).
const MaxListed = 100

// Digester sends digests. Each schedule has a persisted watermark, the end
// of the last period sent: the next digest covers [watermark, tick), so
// periods neither overlap nor leave gaps, across restarts too. Ticks missed
// while Gatehouse was down are sent as one digest at start-up.
type Digester struct {
	st        *Store
	opt       Options
	roles     Roles
	r         renderer
	schedules []*Schedule
	sendEmpty bool
	mailer    *Mailer
	health    failState // the last pass's failure, for /healthz (HealthChecks)

	// Spilled, if set, is how many events wait in spill files for the
	// database (Writer.Spilled; Start sets it). A due digest waits for
	// them, for up to spillHold: replayed later, with their own times,
	// they would fall in a period already sent.
	Spilled   func() int64
	held      map[string]time.Time                    // schedule → when it first waited (RunDue's only)
	auditHead func(tx *sql.Tx) (int64, string, error) // Parts.AuditHead
}

// spillHold is the longest a digest waits for spilled events; spillRetry
// how often it looks again meanwhile.
const (
	spillHold  = 15 * time.Minute
	spillRetry = 30 * time.Second
)

// NewDigester parses the schedules.
func NewDigester(st *Store, opt Options, roles Roles, school string, loc *time.Location, schedules []Schedule, sendEmpty bool, m *Mailer) (*Digester, error) {
	opt.fill()
	if loc == nil {
		loc = time.UTC
	}
	d := &Digester{st: st, opt: opt, roles: roles, r: renderer{school: school, loc: loc, console: opt.ConsoleURL}, sendEmpty: sendEmpty, mailer: m}
	for _, s := range schedules {
		sc, err := cron.ParseStandard(s.Spec)
		if err != nil {
			return nil, fmt.Errorf("digest %s: invalid schedule %q: %w", s.Name, s.Spec, err)
		}
		s.sched = sc
		d.schedules = append(d.schedules, &s)
	}
	return d, nil
}

func (d *Digester) schedule(name string) (*Schedule, error) {
	var names []string
	for _, s := range d.schedules {
		if s.Name == name {
			return s, nil
		}
		names = append(names, s.Name)
	}
	return nil, fmt.Errorf("no digest schedule named %q (configured: %s)", name, strings.Join(names, ", "))
}

// watermark reads a schedule's watermark. A schedule that never ran
// starts at the first stored event (so the first digest covers everything
// since reporting began), or at now on an empty database; create stores
// that start.
func (d *Digester) watermark(name string, now time.Time, create bool) (time.Time, error) {
	var v int64
	err := d.st.db.QueryRow(`SELECT watermark FROM digests WHERE schedule = ?`, name).Scan(&v)
	if err != sql.ErrNoRows {
		return fromMS(v), err
	}
	var first sql.NullInt64
	if err := d.st.db.QueryRow(`SELECT min(ts) FROM events WHERE kind = 1`).Scan(&first); err != nil {
		return time.Time{}, err
	}
	start := now
	if first.Valid && first.Int64 < ms(now) {
		start = fromMS(first.Int64)
	}
	if create {
		if _, err := d.st.db.Exec(`INSERT INTO digests (schedule, watermark) VALUES (?, ?) ON CONFLICT DO NOTHING`, name, ms(start)); err != nil {
			return time.Time{}, err
		}
	}
	return start, nil
}

// digestSettle is how long after its end a period is read. Attempts made
// just before the end reach the database a moment later: the front doors
// hand repeat counts on every half second, and the writer commits events
// no answer waits for within 100 ms (lazyDelay); a digest read at the
// tick missed them, and the next period starts at the tick. The writer
// keeps a repeat count made after a minute's end out of the rows of that
// minute (Writer.add), so what this wait lets in stays in its period.
const digestSettle = 5 * time.Second

// Due works out whether a digest is due at now for a schedule whose last
// period ended at wm: it returns the period's end (the latest tick at or
// before now, so missed ticks fold into one digest) and whether one is due,
// and otherwise the next tick.
func Due(sched cron.Schedule, wm, now time.Time) (end time.Time, due bool, next time.Time) {
	t := sched.Next(wm)
	if t.After(now) {
		return time.Time{}, false, t
	}
	for n := sched.Next(t); !n.After(now); n = sched.Next(n) {
		t = n
	}
	return t, true, sched.Next(t)
}

// RunDue sends every digest due at the current time and returns when the
// next one is due.
func (d *Digester) RunDue(ctx context.Context) (time.Time, error) {
	now := d.opt.Now()
	var next time.Time
	// A schedule that fails does not hold back the others (the DSL's
	// daily digest behind a broken weekly one): each is tried, and the
	// errors are returned together; Run tries again in a minute.
	var errs []error
	for _, s := range d.schedules {
		if err := ctx.Err(); err != nil {
			return time.Time{}, err
		}
		wm, err := d.watermark(s.Name, now, true)
		if err != nil {
			errs = append(errs, fmt.Errorf("digest %s: %w", s.Name, err))
			continue
		}
		end, due, n := Due(s.sched, wm, now.Add(-digestSettle))
		n = n.Add(digestSettle)
		if due && d.Spilled != nil {
			if k := d.Spilled(); k > 0 {
				if d.held == nil {
					d.held = map[string]time.Time{}
				}
				since, ok := d.held[s.Name]
				if !ok {
					since, d.held[s.Name] = now, now
				}
				if now.Sub(since) < spillHold {
					d.opt.Log.Warn("digest waits for events in spill files to reach the database", "schedule", s.Name, "events", k)
					due, n = false, now.Add(spillRetry)
				} else {
					d.opt.Log.Error("digest sent while events still wait in spill files: those events will be in no digest", "schedule", s.Name, "events", k, "waited", now.Sub(since).Round(time.Second))
				}
			}
		}
		if due {
			if _, err := d.send(ctx, s, wm, end, true); err != nil {
				errs = append(errs, fmt.Errorf("digest %s: %w", s.Name, err))
				continue
			}
			delete(d.held, s.Name)
		}
		if next.IsZero() || n.Before(next) {
			next = n
		}
	}
	err := errors.Join(errs...)
	if err != nil {
		d.health.fail(err, now)
	} else {
		d.health.ok()
	}
	return next, err
}

// Run sends digests on their schedules until ctx is done.
func (d *Digester) Run(ctx context.Context) {
	for {
		next, err := d.RunDue(ctx)
		wait := time.Minute
		if err != nil {
			d.opt.Log.Error("digest failed; retrying in a minute", "err", err)
		} else if !next.IsZero() {
			wait = min(max(next.Sub(d.opt.Now()), 0)+100*time.Millisecond, time.Hour)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// Preview renders the digest a schedule would send now, without sending
// it or moving its watermark. It returns one message per role.
func (d *Digester) Preview(ctx context.Context, name string) ([]*Message, error) {
	s, err := d.schedule(name)
	if err != nil {
		return nil, err
	}
	now := d.opt.Now()
	wm, err := d.watermark(s.Name, now, false)
	if err != nil {
		return nil, err
	}
	return d.send(ctx, s, wm, now, false)
}

// SendNow sends a schedule's digest for the period up to now and moves its
// watermark. (Asked for by hand, it covers up to the moment it is asked:
// what of the last second a running writer has yet to store is not in it,
// nor in the next.)
func (d *Digester) SendNow(ctx context.Context, name string) ([]*Message, error) {
	s, err := d.schedule(name)
	if err != nil {
		return nil, err
	}
	now := d.opt.Now()
	wm, err := d.watermark(s.Name, now, true)
	if err != nil {
		return nil, err
	}
	if now.Before(wm) { // sent a moment ago (or the clock was set back): never a period that ends before it starts
		now = wm
	}
	return d.send(ctx, s, wm, now, true)
}

type periodIncident struct {
	Incident
	n           int64
	first, last time.Time
	role        string
}

// send renders the digests of [from, to) and, when commit is set, queues
// them, marks their incidents reported and moves the watermark to to, all
// in one transaction (so a crash sends the digest once or not at all).
func (d *Digester) send(ctx context.Context, s *Schedule, from, to time.Time, commit bool) ([]*Message, error) {
	tx, err := d.st.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	if commit {
		// The watermark may have moved since it was read (report send
		// racing the schedule): re-read it inside the transaction.
		var wm int64
		if err := tx.QueryRowContext(ctx, `SELECT watermark FROM digests WHERE schedule = ?`, s.Name).Scan(&wm); err == nil && wm != ms(from) {
			if wm >= ms(to) {
				return nil, nil
			}
			from = fromMS(wm)
		}
	}
	incs, err := d.period(ctx, tx, from, to)
	if err != nil {
		return nil, err
	}
	prev, err := d.totals(ctx, tx, from.Add(-to.Sub(from)), from)
	if err != nil {
		return nil, err
	}
	mistakes, err := d.st.mistakes(tx, Filter{Since: from, Until: to})
	if err != nil {
		return nil, err
	}
	itRole := d.roles.resolve(string(bl.RouteIT))
	pending, err := pendingMistakes(tx)
	if err != nil {
		return nil, err
	}
	// What is wrong now: a digest never says all is well while it is not.
	probs, err := readProblems(ctx, tx, true)
	if err != nil {
		return nil, err
	}
	// The audit log's fingerprint: kept in the recipients' mail, it lets
	// an auditor show later that no entry up to it was changed or removed
	// (gatehouse audit verify --at).
	audit := ""
	if d.auditHead != nil {
		id, hash, err := d.auditHead(tx)
		if err != nil {
			return nil, fmt.Errorf("reading the audit log's end: %w", err)
		}
		if id > 0 && len(hash) >= auditFingerprint {
			audit = fmt.Sprintf("%d:%s", id, hash[:auditFingerprint])
		}
	}
	var msgs []*Message
	var ids []int64
	for _, role := range s.Roles {
		if role != string(bl.RouteDSL) && len(d.roles[role]) == 0 {
			continue // no addresses: its incidents went to the DSL's digest
		}
		var mine []periodIncident
		for _, i := range incs {
			if d.roles.covers(role, i.role) {
				mine = append(mine, i)
			}
		}
		var myMistakes []Mistake
		myPending := 0
		if d.roles.covers(role, itRole) {
			myMistakes, myPending = mistakes, pending
		}
		if len(mine) == 0 && len(myMistakes) == 0 && !d.sendEmpty && len(probs) == 0 {
			continue
		}
		m, err := d.render(s, role, from, to, mine, prev, myMistakes, myPending, probs, audit)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
		for _, i := range mine {
			ids = append(ids, i.ID)
			m.Shown = append(m.Shown, ShownIncident(i.ID, i.Who))
		}
		if commit {
			key := fmt.Sprintf("digest-%s-%s-%d", s.Name, role, ms(to))
			if err := enqueue(tx, m, key, d.opt.Now()); err != nil {
				return nil, err
			}
		}
	}
	if !commit {
		return msgs, nil
	}
	for _, id := range ids {
		if _, err := tx.ExecContext(ctx, `UPDATE incidents SET status = ? WHERE id = ? AND status IN (?, ?)`, StatusReported, id, StatusNew, StatusAlerted); err != nil {
			return nil, err
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO digests (schedule, watermark) VALUES (?, ?)
		ON CONFLICT(schedule) DO UPDATE SET watermark = excluded.watermark`, s.Name, ms(to)); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	d.opt.Log.Info("digest queued", "schedule", s.Name, "from", from, "to", to, "messages", len(msgs), "incidents", len(incs))
	if d.mailer != nil {
		d.mailer.Wake()
	}
	return msgs, nil
}

// period reads the incidents with attempts in [from, to), with the
// attempts, first and last time inside the period.
func (d *Digester) period(ctx context.Context, tx *sql.Tx, from, to time.Time) ([]periodIncident, error) {
	cols := strings.ReplaceAll("i."+incidentCols, ", ", ", i.")
	rows, err := tx.QueryContext(ctx, `SELECT `+cols+`, a.n, a.f, a.l FROM
		(SELECT incident_id, SUM(count) AS n, MIN(ts) AS f, MAX(ts) AS l FROM events
		 WHERE kind = 1 AND ts >= ? AND ts < ? AND incident_id IS NOT NULL GROUP BY incident_id) a
		JOIN incidents i ON i.id = a.incident_id`, ms(from), ms(to))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []periodIncident
	for rows.Next() {
		var p periodIncident
		var f, l int64
		var err error
		if p.Incident, err = scanIncident(rows, &p.n, &f, &l); err != nil {
			return nil, err
		}
		p.first, p.last = fromMS(f), fromMS(l)
		p.role = d.roles.resolve(p.Route)
		out = append(out, p)
	}
	return out, rows.Err()
}

// totals counts breach attempts by route in [from, to).
func (d *Digester) totals(ctx context.Context, tx *sql.Tx, from, to time.Time) (map[string]int64, error) {
	rows, err := tx.QueryContext(ctx, `SELECT route, SUM(count) FROM events WHERE kind = 1 AND ts >= ? AND ts < ? GROUP BY route`, ms(from), ms(to))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var r string
		var n int64
		if err := rows.Scan(&r, &n); err != nil {
			return nil, err
		}
		out[d.roles.resolve(r)] += n
	}
	return out, rows.Err()
}

// auditFingerprint is how many hex digits of the audit log's last hash a
// digest carries (64 bits: no one can make another chain end in them).
const auditFingerprint = 16

func (d *Digester) render(s *Schedule, role string, from, to time.Time, incs []periodIncident, prev map[string]int64, mistakes []Mistake, pending int, probs []problemRow, audit string) (*Message, error) {
	sort.Slice(incs, func(a, b int) bool {
		if incs[a].Severity != incs[b].Severity {
			return incs[a].Severity > incs[b].Severity
		}
		if incs[a].n != incs[b].n {
			return incs[a].n > incs[b].n
		}
		return incs[a].ID < incs[b].ID
	})
	dd := &digestData{School: d.r.school, Schedule: s.Name, Empty: len(incs) == 0,
		Period: "From " + d.r.local(from) + " to " + d.r.local(to) + " (" + d.r.loc.String() + ")", Health: d.r.healthViews(probs), Audit: audit}
	var high, bypass, other int64
	byCat, byGroup, byClient := map[string]int64{}, map[string]int64{}, map[string]int64{}
	advised := map[string]bool{}
	var worst bl.Severity
	for idx := range incs {
		p := &incs[idx]
		dd.Total += p.n
		worst = max(worst, p.Severity)
		switch {
		case p.Bypass || isBypass(p.Category):
			bypass++
		case p.Severity >= bl.SeverityHigh:
			high++
		default:
			other += p.n
		}
		byCat[mailLine(p.whatText())] += p.n
		g := mailLine(p.Group)
		if g == "" {
			g = "(no group)"
		}
		byGroup[g] += p.n
		byClient[mailLine(p.whoText())] += p.n
		if p.Severity < bl.SeverityMedium {
			dd.Lower++
		} else if len(dd.Incidents) < MaxListed {
			v := d.r.incidentView(&p.Incident, p.n, p.first, p.last)
			v.Note = advice(&p.Incident)
			dd.Incidents = append(dd.Incidents, v)
		} else {
			dd.More++
		}
		if a := advice(&p.Incident); p.Severity >= bl.SeverityMedium && !advised[a] && len(dd.Advice) < 6 {
			advised[a] = true
			dd.Advice = append(dd.Advice, a)
		}
	}
	dd.Summary = fmt.Sprintf("%s, %s, %s", plural(high, "high-risk incident"), plural(bypass, "bypass attempt"), plural(other, "other block"))
	if dd.Empty {
		dd.Summary = "No incidents"
	}
	for i := range mistakes {
		if len(dd.Mistakes) == MaxListed {
			dd.MoreMistakes = len(mistakes) - MaxListed
			break
		}
		dd.Mistakes = append(dd.Mistakes, d.r.mistakeView(&mistakes[i]))
	}
	if len(mistakes) > 0 {
		dd.Summary += ", " + plural(int64(len(mistakes)), "block reported as a mistake")
	}
	if dd.Pending = pending; pending > 0 {
		dd.Summary += ", " + plural(int64(pending), "mistake report") + " to review"
	}
	if len(probs) > 0 {
		dd.Summary += "; " + plural(int64(len(probs)), "filter health problem")
	}
	dd.ByCategory, dd.ByGroup, dd.TopClients = top(byCat, 0), top(byGroup, 0), top(byClient, 10)
	for r, n := range prev {
		if d.roles.covers(role, r) {
			dd.Prev += n
		}
	}
	switch {
	case dd.Prev == 0 && dd.Total == 0:
		dd.Trend = "No attempts in this period or the one before."
	case dd.Prev == 0:
		dd.Trend = fmt.Sprintf("%d attempts, none in the previous period of the same length.", dd.Total)
	default:
		pct := (float64(dd.Total) - float64(dd.Prev)) * 100 / float64(dd.Prev)
		dir := "up"
		if pct < 0 {
			dir, pct = "down", -pct
		}
		dd.Trend = fmt.Sprintf("%d attempts, %s %.0f%% on the previous period (%d).", dd.Total, dir, pct, dd.Prev)
	}
	if d.r.console != "" {
		dd.Advice = append(dd.Advice, "Record what you decide and why (KCSIE): open each incident from its link, add a case note and close it with the outcome.")
	} else {
		dd.Advice = append(dd.Advice, "Record what you decide and why (KCSIE): find each incident by its reference (#) under Incidents in the console, add a case note and close it with the outcome. (The references are not links: console.url is not set in Gatehouse's config.)")
	}
	text, html, err := d.r.digest(dd)
	if err != nil {
		return nil, err
	}
	sev := "OK"
	if !dd.Empty {
		sev = strings.ToUpper(worst.String())
	}
	if len(probs) > 0 && dd.Empty {
		sev = "NOT WORKING"
	}
	subject := fmt.Sprintf("[%s] %s %s report: %s", d.r.school, sev, s.Name, dd.Summary)
	return &Message{Kind: "digest", Role: role, Recipients: slices.Clone(d.roles[role]), Subject: subject, Text: text, HTML: html}, nil
}

func isBypass(cat string) bool {
	c, err := bl.ParseCategory(cat)
	return err == nil && c.Bypass()
}

func plural(n int64, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func top(m map[string]int64, limit int) []countRow {
	out := make([]countRow, 0, len(m))
	for k, v := range m {
		out = append(out, countRow{k, v})
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].N != out[b].N {
			return out[a].N > out[b].N
		}
		return out[a].Name < out[b].Name
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}
