package reports

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	htmltemplate "html/template"
	"slices"
	texttemplate "text/template"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
)

// "Report a mistake" forms from the block page are events with Action
// ActionReport. The writer stores them as their own kind, kept as long as
// breaches; the alerter mails the new ones to the it role in one message
// at most every Options.MistakeMailEvery (the first at once), digests for
// the it role list those of their period, and `gatehouse events
// --mistakes` exports them.

// ActionReport is the Action of a "report a mistake" event.
const ActionReport = "report"

// DefaultMistakeMailEvery is the least time between two mails of mistake
// reports to IT.
const DefaultMistakeMailEvery = 5 * time.Minute

// Mistake is one stored "report a mistake" form.
type Mistake struct {
	ID         int64
	Time       time.Time
	Client     string
	Device     string
	User       string
	Group      string
	Name       string // the site ("" for the restricted tier)
	URL        string
	Category   string
	Restricted bool
	Ref        string // the block page's reference code
	Note       string // what the person wrote
}

const mistakeCols = `id, ts, client, device, user, grp, name, url, category, flags, ref, note`

func scanMistake(r scanner) (Mistake, error) {
	var m Mistake
	var ts int64
	var flags int
	err := r.Scan(&m.ID, &ts, &m.Client, &m.Device, &m.User, &m.Group, &m.Name, &m.URL, &m.Category, &flags, &m.Ref, &m.Note)
	m.Time, m.Restricted = fromMS(ts), flags&flagRestricted != 0
	if m.Restricted || isRestricted(m.Category) {
		m.Restricted, m.Name, m.URL = true, "", ""
	}
	return m, err
}

// mistakeView is a report as mail shows it: the group (whose allow list
// would take the site), not who sent it, as the console's mis-block queue
// shows it to IT (the reference finds the report in the console).
type mistakeView struct {
	When, Group, Site, Category, Ref, Note string
}

func (r *renderer) mistakeView(m *Mistake) mistakeView {
	v := mistakeView{When: r.local(m.Time), Group: mailLine(m.Group), Ref: mailLine(m.Ref), Note: mailLine(unlinked(m.Note))}
	switch {
	case m.Restricted:
		v.Site = restrictedText(m.Category)
	case m.URL != "":
		v.Site = mailLine(m.URL)
	default:
		v.Site = mailLine(m.Name)
	}
	if m.Category != "" && !m.Restricted {
		v.Category = mailLine(categoryTitle(m.Category))
	}
	if v.Ref == "" {
		v.Ref = "(none)"
	}
	return v
}

// mailMistakes queues one mail to IT with every report not mailed yet,
// unless the last such mail was less than MistakeMailEvery ago. It
// reports whether it queued one.
func (a *Alerter) mailMistakes(ctx context.Context, now time.Time) (bool, error) {
	every := a.opt.MistakeMailEvery
	if every <= 0 {
		every = DefaultMistakeMailEvery
	}
	// Cheap check first, without a write transaction.
	var pending int
	if err := a.st.db.QueryRowContext(ctx, `SELECT count(*) FROM events WHERE kind = ? AND mailed_ts = 0`, kindReport).Scan(&pending); err != nil || pending == 0 {
		return false, err
	}
	tx, err := a.st.db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	var last sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT max(mailed_ts) FROM events WHERE kind = ?`, kindReport).Scan(&last); err != nil {
		return false, err
	}
	// A mail stamped more than the gap ahead of now (the clock was fast
	// then, and has been set right) holds nothing back, as for alerts
	// (Alerter.dedupWindow).
	if d := now.Sub(fromMS(last.Int64)); last.Int64 > 0 && d < every && d > -every {
		return false, nil // the next check after the gap sends these
	}
	rows, err := tx.QueryContext(ctx, `SELECT `+mistakeCols+` FROM events WHERE kind = ? AND mailed_ts = 0 ORDER BY id`, kindReport)
	if err != nil {
		return false, err
	}
	var views []mistakeView
	var first, lastID int64
	total := 0
	for rows.Next() {
		m, err := scanMistake(rows)
		if err != nil {
			rows.Close()
			return false, err
		}
		if first == 0 {
			first = m.ID
		}
		lastID = m.ID
		total++
		if len(views) < MaxListed {
			views = append(views, a.r.mistakeView(&m))
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return false, err
	}
	if total == 0 {
		return false, nil
	}
	subject, text, html, err := a.r.mistakes(views, total)
	if err != nil {
		return false, err
	}
	role := a.roles.resolve(string(bl.RouteIT))
	msg := &Message{Kind: "mistakes", Role: role, Recipients: slices.Clone(a.roles[role]), Subject: subject, Text: text, HTML: html}
	if err := enqueue(tx, msg, fmt.Sprintf("mistakes-%d-%d", first, lastID), now); err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE events SET mailed_ts = ? WHERE kind = ? AND mailed_ts = 0 AND id <= ?`, ms(now), kindReport, lastID); err != nil {
		return false, err
	}
	if err := tx.Commit(); err != nil {
		return false, err
	}
	a.opt.Log.Info("mistake reports mailed", "reports", total, "role", role)
	return true, nil
}

// Mistakes lists the "report a mistake" forms in the filter's period,
// oldest first (Since, Until, Client and Limit apply).
func (s *Store) Mistakes(f Filter) ([]Mistake, error) {
	return s.mistakes(s.db, f)
}

type querier interface {
	Query(string, ...any) (*sql.Rows, error)
}

func (s *Store) mistakes(q querier, f Filter) ([]Mistake, error) {
	query := `SELECT ` + mistakeCols + ` FROM events WHERE kind = ? AND ts >= ?`
	args := []any{kindReport, ms(f.Since)}
	if !f.Until.IsZero() {
		query += ` AND ts < ?`
		args = append(args, ms(f.Until))
	}
	if f.Client != "" {
		query += ` AND (client = ? OR device = ? OR user = ?)`
		args = append(args, f.Client, f.Client, f.Client)
	}
	query += ` ORDER BY ts, id`
	if f.Limit > 0 {
		query += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	return collectMistakes(q.Query(query, args...))
}

// collectMistakes reads the rows of a query of mistakeCols.
func collectMistakes(rows *sql.Rows, err error) ([]Mistake, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Mistake
	for rows.Next() {
		m, err := scanMistake(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

type mistakesData struct {
	School  string
	Title   string
	Reports []mistakeView
	More    int
}

var mistakesText = texttemplate.Must(texttemplate.New("mistakes").Parse(`{{.Title}}

Pupils or staff used "Report a mistake" on the block page. Look at each
site and unblock it (lists or a group's allow list) if it is needed.
{{range .Reports}}
Site:      {{.Site}}{{if .Category}} ({{.Category}}){{end}}
Group:     {{.Group}}
When:      {{.When}}
Reference: {{.Ref}}
Why:       {{.Note}}
{{end}}{{if .More}}
...and {{.More}} more (gatehouse events --mistakes lists them all).
{{end}}
-- 
Gatehouse web filter, {{.School}}.
`))

var mistakesHTML = htmltemplate.Must(htmltemplate.New("mistakes").Parse(htmlHead + `
<h1>{{.Title}}</h1>
<p>Pupils or staff used “Report a mistake” on the block page. Look at each site and unblock it (lists or a group's allow list) if it is needed.</p>
{{range .Reports}}<div class="inc"><b>Site:</b> {{.Site}}{{if .Category}} <span class="muted">({{.Category}})</span>{{end}}<br>
<b>Group:</b> {{.Group}}<br><b>When:</b> {{.When}}<br><b>Reference:</b> {{.Ref}}<br><b>Why:</b> {{.Note}}</div>
{{end}}{{if .More}}<p class="muted">…and {{.More}} more (<code>gatehouse events --mistakes</code> lists them all).</p>{{end}}
<p class="muted">Gatehouse web filter, {{.School}}.</p></body></html>`))

func (r *renderer) mistakes(views []mistakeView, total int) (subject, text, html string, err error) {
	d := mistakesData{School: r.school, Reports: views, More: total - len(views)}
	d.Title = "Blocked site reported as a mistake"
	if total > 1 {
		d.Title = fmt.Sprintf("%d blocked sites reported as mistakes", total)
	}
	subject = fmt.Sprintf("[%s] %s", r.school, d.Title)
	var tb, hb bytes.Buffer
	if err := mistakesText.Execute(&tb, d); err != nil {
		return "", "", "", err
	}
	if err := mistakesHTML.Execute(&hb, d); err != nil {
		return "", "", "", err
	}
	return subject, tb.String(), hb.String(), nil
}
