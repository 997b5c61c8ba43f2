package reports

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"slices"
	"strings"
	"sync"
	texttemplate "text/template"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/health"
)

// Health notices: a problem that lasts longer than After is mailed to the
// it role (the DSL when IT has no address) once, again every Remind while
// it lasts, and "resolved" once it has been gone for Clear. The state lives
// in the health_problems table and the mail goes through the outbox, in
// one transaction, so a restart neither repeats nor forgets a notice, and
// a failing mail server delays notices without losing them.

// failState remembers since when something has been failing, and why.
type failState struct {
	mu    sync.Mutex
	since time.Time // zero while healthy
	err   error
}

func (f *failState) fail(err error, now time.Time) {
	f.mu.Lock()
	if f.since.IsZero() {
		f.since = now
	}
	f.err = err
	f.mu.Unlock()
}

func (f *failState) ok() {
	f.mu.Lock()
	f.since, f.err = time.Time{}, nil
	f.mu.Unlock()
}

func (f *failState) get() (time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.since, f.err
}

// Healthy reports whether mail is being delivered: a nil error, or why
// not and since when. Mail is failing while any message waits after a
// failed attempt, whatever else was delivered since (a relay that takes
// IT's mail but refuses the DSL's address leaves the DSL's alerts waiting:
// that is failing, not healthy), or while the last attempt failed.
func (m *Mailer) Healthy() (since time.Time, err error) {
	return m.healthOf(m.Failures())
}

// healthOf is Healthy from the outbox's failures (Failures) as read.
func (m *Mailer) healthOf(fs []MailFailure, ferr error) (since time.Time, err error) {
	if ferr != nil {
		since, _ = m.health.get()
		if since.IsZero() {
			since = m.now()
		}
		return since, fmt.Errorf("reading the outbox: %w", ferr)
	}
	if len(fs) == 0 {
		return m.health.get()
	}
	var why []string
	for _, f := range fs {
		if since.IsZero() || f.Since.Before(since) {
			since = f.Since
		}
		why = append(why, fmt.Sprintf("to the %s role (%d waiting): %s", f.Role, f.Waiting, f.Err))
	}
	return since, errors.New(strings.Join(why, "; "))
}

// MailFailure is mail to one role that is not getting through.
type MailFailure struct {
	Role    string
	Since   time.Time // when the oldest of them was queued
	Waiting int       // messages waiting after a failed attempt
	Err     string    // the latest attempt's error
	// Copies is how many of them have an .eml copy in the outbox
	// directory; NoCopy how many failed often enough to have one
	// (MailConfig.FallbackAfter) but could not be written.
	Copies, NoCopy int
}

// Failures lists, by role, the messages that wait after a failed attempt.
func (m *Mailer) Failures() ([]MailFailure, error) {
	// SQLite gives the bare column last_error from the row of max(next_ts):
	// the most recently tried message's error.
	rows, err := m.st.db.Query(`SELECT role, min(created_ts), count(*), last_error, max(next_ts),
		sum(eml_path != ''), sum(eml_path = '' AND attempts >= ?) FROM outbox
		WHERE sent_ts = 0 AND attempts > 0 GROUP BY role ORDER BY min(created_ts), role`, m.cfg.FallbackAfter)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []MailFailure
	for rows.Next() {
		var f MailFailure
		var since, next int64
		if err := rows.Scan(&f.Role, &since, &f.Waiting, &f.Err, &next, &f.Copies, &f.NoCopy); err != nil {
			return nil, err
		}
		f.Since = fromMS(since)
		out = append(out, f)
	}
	return out, rows.Err()
}

func (s *Service) writerHealthy() (bool, string) {
	if s.Writer == nil {
		return true, ""
	}
	return s.Writer.Healthy()
}

// HealthChecks returns the checks of the event writer and the mailer.
func (s *Service) HealthChecks() (events, mail health.Check) {
	events = func() []health.Problem {
		var out []health.Problem
		if ok, why := s.writerHealthy(); !ok {
			out = append(out, health.Problem{Key: "events/writer", Part: "events", Message: "breach events: " + why})
		}
		// Alerts and digests that cannot be prepared (their errors name
		// incidents and schedules by number and name, never a pupil).
		if s.Alerter != nil {
			if since, err := s.Alerter.health.get(); err != nil {
				out = append(out, health.Problem{Key: "reports/alerts", Part: "reports", Message: fmt.Sprintf("alerts cannot all be prepared since %s: %v", since.UTC().Format(time.RFC3339), err)})
			}
		}
		if s.Digester != nil {
			if since, err := s.Digester.health.get(); err != nil {
				out = append(out, health.Problem{Key: "reports/digests", Part: "reports", Message: fmt.Sprintf("digests cannot all be prepared since %s: %v", since.UTC().Format(time.RFC3339), err)})
			}
		}
		return out
	}
	mail = func() []health.Problem {
		var out []health.Problem
		if s.Mailer.cfg.Host != "" && len(s.roles[string(bl.RouteDSL)]) == 0 {
			// Every alert falls back to the DSL, so with no address here
			// the serious ones reach nobody: the .eml file is all there is.
			msg := "the DSL role has no address (reports.recipients.dsl): alerts and digests for the DSL are not mailed to anyone"
			if s.Mailer.cfg.Dir != "" {
				msg += ", only written to " + s.Mailer.cfg.Dir
			}
			out = append(out, health.Problem{Key: "mail/dsl", Part: "mail", Message: msg})
		}
		fs, ferr := s.Mailer.Failures()
		since, err := s.Mailer.healthOf(fs, ferr)
		if err == nil {
			return out
		}
		msg := fmt.Sprintf("mail is failing since %s: %v", since.UTC().Format(time.RFC3339), err)
		if n, perr := s.Mailer.Pending(); perr == nil {
			msg += fmt.Sprintf("; %d message(s) waiting", n)
		}
		if dir := s.Mailer.cfg.Dir; dir != "" {
			// Where IT finds the copies to pass on by hand, or that there
			// are none: never "written" when they could not be.
			var copies, missing int
			for _, f := range fs {
				copies, missing = copies+f.Copies, missing+f.NoCopy
			}
			switch {
			case missing > 0:
				msg += fmt.Sprintf("; copies of %d of them could NOT be written to %s (see the error)", missing, dir)
			case copies > 0:
				msg += fmt.Sprintf("; copies of %d of them in %s", copies, dir)
			default:
				msg += fmt.Sprintf("; after %d failed attempts a copy of each is written to %s", s.Mailer.cfg.FallbackAfter, dir)
			}
		}
		return append(out, health.Problem{Key: "mail", Part: "mail", Message: msg})
	}
	return events, mail
}

// HealthNotifier mails IT about lasting health problems.
type HealthNotifier struct {
	st       *Store
	opt      Options
	roles    Roles
	r        renderer
	mailer   *Mailer
	problems func() []health.Problem

	// After is how long a problem must last before IT is told (default
	// 5m); Remind how often IT is reminded while it lasts (default 24h);
	// Clear how long it must be gone before it is resolved (default 2m),
	// so a flapping problem is one problem.
	After, Remind, Clear time.Duration
}

// NewHealthNotifier makes a notifier that checks problems at each Step.
func NewHealthNotifier(st *Store, opt Options, roles Roles, school string, loc *time.Location, m *Mailer, problems func() []health.Problem) *HealthNotifier {
	opt.fill()
	if loc == nil {
		loc = time.UTC
	}
	return &HealthNotifier{st: st, opt: opt, roles: roles, r: renderer{school: school, loc: loc}, mailer: m, problems: problems,
		After: 5 * time.Minute, Remind: 24 * time.Hour, Clear: 2 * time.Minute}
}

// Run checks every interval until ctx is done.
func (n *HealthNotifier) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = 30 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := n.Step(ctx); err != nil && ctx.Err() == nil {
			n.opt.Log.Error("health notices", "err", err)
		}
	}
}

// problemRow is one row of health_problems.
type problemRow struct {
	health.Problem
	since, seen, mailed, reminded, gone int64
}

// Step compares the current problems with the recorded ones, queues the
// notices that are due and returns how many messages it queued.
func (n *HealthNotifier) Step(ctx context.Context) (int, error) {
	now := n.opt.Now()
	cur := n.problems()
	tx, err := n.st.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	rows, err := readProblems(ctx, tx, false)
	if err != nil {
		return 0, err
	}
	byKey := map[string]*problemRow{}
	for i := range rows {
		byKey[rows[i].Key] = &rows[i]
	}
	t := ms(now)
	present := map[string]bool{}
	for _, p := range cur {
		if present[p.Key] {
			continue
		}
		present[p.Key] = true
		if r := byKey[p.Key]; r != nil {
			r.Problem, r.seen, r.gone = p, t, 0
		} else {
			rows = append(rows, problemRow{Problem: p, since: t, seen: t})
		}
	}
	var fresh, remind, resolved []problemRow
	var keep []problemRow
	for _, r := range rows {
		switch {
		case !present[r.Key] && r.gone == 0:
			r.gone = t
		}
		if r.gone > 0 {
			if t-r.gone >= n.Clear.Milliseconds() {
				if r.mailed > 0 {
					resolved = append(resolved, r)
				}
				if _, err := tx.ExecContext(ctx, `DELETE FROM health_problems WHERE key = ?`, r.Key); err != nil {
					return 0, err
				}
				continue
			}
		} else if r.mailed == 0 && t-r.since >= n.After.Milliseconds() {
			r.mailed = t
			fresh = append(fresh, r)
		} else if r.mailed > 0 && t-max(r.mailed, r.reminded) >= n.Remind.Milliseconds() {
			r.reminded = t
			remind = append(remind, r)
		}
		keep = append(keep, r)
	}
	for _, r := range keep {
		if _, err := tx.ExecContext(ctx, `INSERT INTO health_problems (key, part, message, since_ts, seen_ts, mailed_ts, remind_ts, gone_ts)
			VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(key) DO UPDATE SET part = excluded.part, message = excluded.message,
			seen_ts = excluded.seen_ts, mailed_ts = excluded.mailed_ts, remind_ts = excluded.remind_ts, gone_ts = excluded.gone_ts`,
			r.Key, r.Part, r.Message, r.since, r.seen, r.mailed, r.reminded, r.gone); err != nil {
			return 0, err
		}
	}
	var open []problemRow // everything still wrong, for context in each notice
	for _, r := range keep {
		if r.gone == 0 {
			open = append(open, r)
		}
	}
	queued := 0
	for _, m := range []struct {
		kind string
		list []problemRow
	}{{"problem", fresh}, {"reminder", remind}, {"resolved", resolved}} {
		if len(m.list) == 0 {
			continue
		}
		msg, err := n.render(m.kind, m.list, open, now)
		if err != nil {
			return 0, err
		}
		if err := enqueue(tx, msg, fmt.Sprintf("health-%s-%d", m.kind, t), now); err != nil {
			return 0, err
		}
		queued++
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	if queued > 0 {
		n.opt.Log.Info("health notices queued", "problems", len(fresh), "reminders", len(remind), "resolved", len(resolved))
		if n.mailer != nil {
			n.mailer.Wake()
		}
	}
	return queued, nil
}

// readProblems reads the recorded problems, oldest first; current leaves
// out those that were gone at the last check.
func readProblems(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, current bool) ([]problemRow, error) {
	query := `SELECT key, part, message, since_ts, seen_ts, mailed_ts, remind_ts, gone_ts FROM health_problems`
	if current {
		query += ` WHERE gone_ts = 0`
	}
	rows, err := q.QueryContext(ctx, query+` ORDER BY since_ts, key`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []problemRow
	for rows.Next() {
		var r problemRow
		if err := rows.Scan(&r.Key, &r.Part, &r.Message, &r.since, &r.seen, &r.mailed, &r.reminded, &r.gone); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// healthView is one problem as the templates show it.
type healthView struct {
	Message string
	Since   string
	Advice  string
}

func (r *renderer) healthViews(rows []problemRow) []healthView {
	out := make([]healthView, len(rows))
	for i, p := range rows {
		out[i] = healthView{Message: p.Message, Since: r.local(fromMS(p.since)), Advice: healthAdvice(p.Part, p.Key)}
	}
	return out
}

// healthAdvice is what IT should do about a problem in part (key picks
// out the few that need their own).
func healthAdvice(part, key string) string {
	if key == "mail/dsl" {
		return "Set reports.recipients.dsl to the DSL's address(es) and restart Gatehouse; until then, give the DSL the .eml files in the outbox directory."
	}
	switch part {
	case "dns":
		return "Check the network path to the upstream resolvers (dns.upstreams) and that they answer; names they serve cannot be resolved."
	case "lists":
		return "Run gatehouse lists stats and gatehouse lists update to see why; sites on that list are not blocked until it loads."
	case "mail":
		return "Check the SMTP server and reports.smtp; alerts and digests wait in the outbox and are sent when it works again."
	case "events":
		return "Check the disk and the database file; breach events are kept in memory and retried, but a restart would lose them."
	case "reports":
		return "The other alerts and digests still go out; the one named is retried every pass. Look in the console for it, and send the Gatehouse log lines to the developers."
	}
	return "See the Gatehouse log for details."
}

type healthData struct {
	School   string
	Title    string
	Kind     string
	Items    []healthView
	Others   []healthView // still open, not in Items
	Checked  string
	Resolved bool
}

var healthText = texttemplate.Must(texttemplate.New("health").Parse(`{{.Title}}
{{range .Items}}
- {{.Message}}
  Since: {{.Since}}{{if not $.Resolved}}
  Do:    {{.Advice}}{{end}}
{{end}}{{if .Others}}
Also still not working:
{{range .Others}}- {{.Message}} (since {{.Since}})
{{end}}{{end}}
Checked at {{.Checked}}. The current state is always at /healthz on the admin listener.
-- 
Gatehouse web filter, {{.School}}.
`))

var healthHTML = htmltemplate.Must(htmltemplate.New("health").Parse(htmlHead + `
<h1>{{.Title}}</h1>
{{range .Items}}<div class="inc"><b>{{.Message}}</b><br><span class="muted">Since {{.Since}}</span>
{{- if not $.Resolved}}<div class="do">{{.Advice}}</div>{{end}}</div>
{{end}}{{if .Others}}<h2>Also still not working</h2><ul>{{range .Others}}<li>{{.Message}} (since {{.Since}})</li>{{end}}</ul>{{end}}
<p class="muted">Checked at {{.Checked}}. The current state is always at /healthz on the admin listener.</p>
<p class="muted">Gatehouse web filter, {{.School}}.</p></body></html>`))

func (n *HealthNotifier) render(kind string, items, open []problemRow, now time.Time) (*Message, error) {
	d := healthData{School: n.r.school, Kind: kind, Checked: n.r.local(now), Resolved: kind == "resolved"}
	d.Items = n.r.healthViews(items)
	var others []problemRow
	for _, o := range open {
		if !slices.ContainsFunc(items, func(i problemRow) bool { return i.Key == o.Key }) {
			others = append(others, o)
		}
	}
	d.Others = n.r.healthViews(others)
	first, _, _ := strings.Cut(items[0].Message, ": ") // the gist; the body has the detail
	if len(items) > 1 {
		first += fmt.Sprintf(" (and %d more)", len(items)-1)
	}
	var subject string
	switch kind {
	case "problem":
		d.Title = "Gatehouse is not fully working"
		subject = fmt.Sprintf("[%s] PROBLEM: %s", n.r.school, first)
	case "reminder":
		d.Title = "Reminder: Gatehouse is still not fully working"
		subject = fmt.Sprintf("[%s] STILL NOT WORKING: %s", n.r.school, first)
	default:
		d.Title = "Resolved: this is working again"
		subject = fmt.Sprintf("[%s] RESOLVED: %s", n.r.school, first)
	}
	var tb, hb bytes.Buffer
	if err := healthText.Execute(&tb, d); err != nil {
		return nil, err
	}
	if err := healthHTML.Execute(&hb, d); err != nil {
		return nil, err
	}
	role := n.roles.resolve(string(bl.RouteIT))
	return &Message{Kind: "health", Role: role, Recipients: slices.Clone(n.roles[role]), Subject: oneLine(subject),
		Text: tb.String(), HTML: hb.String()}, nil
}

// oneLine keeps a subject on one line and of a readable length.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > 160 {
		s = string(r[:159]) + "…"
	}
	return s
}
