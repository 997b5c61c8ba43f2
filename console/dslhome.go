package console

import (
	"fmt"
	"html/template"
	"sort"
	"strings"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// The DSL's (and the headteacher's, for staff) home page beyond the
// counts: what needs attention now, bypass attempts, a 30-day chart by
// theme (SVG drawn here: no script) and whether alert mail is healthy.

const (
	attentionLimit = 20 // open high and critical incidents listed
	chartDays      = 30
	chartThemes    = 5 // themes drawn; the rest are "other"
	mailStuckAfter = 15 * time.Minute
)

// mailView says whether alert mail is healthy, in words.
type mailView struct {
	OK   bool
	Text string
}

// caseHome adds the case pages' parts to the home page; it returns the
// incidents it lists (needs attention now), whose look is audited.
func (s *Server) caseHome(data map[string]any, route string) ([]reports.Case, error) {
	if s.o.Cases == nil {
		return nil, nil
	}
	att, err := s.o.Cases.Attention(bl.SeverityHigh, route, attentionLimit)
	if err != nil {
		return nil, err
	}
	if len(att) == attentionLimit {
		more, err := s.attentionMore(route, len(att))
		if err != nil {
			return nil, err
		}
		data["AttentionMore"] = more
	}
	today, week := s.periods()
	_, bypassWeek, err := s.o.Cases.IncidentPage(reports.IncidentQuery{Since: week, AnySeverity: true, Route: route, Bypass: true, Limit: 1})
	if err != nil {
		return nil, err
	}
	_, bypassToday, err := s.o.Cases.IncidentPage(reports.IncidentQuery{Since: today, AnySeverity: true, Route: route, Bypass: true, Limit: 1})
	if err != nil {
		return nil, err
	}
	from := today.AddDate(0, 0, -(chartDays - 1))
	days, err := s.o.Cases.Themes(from, today.AddDate(0, 0, 1), route, s.o.Location)
	if err != nil {
		return nil, err
	}
	m, err := s.o.Cases.Mail()
	if err != nil {
		return nil, err
	}
	data["Attention"], data["BypassToday"], data["BypassWeek"] = att, bypassToday, bypassWeek
	chart, table := themeChart(days, from, chartDays)
	data["Chart"], data["ChartTable"] = chart, table
	data["Mail"] = s.mailView(m)
	data["HasCases"] = true
	return att, nil
}

// attentionMore says how many open high and critical incidents there are
// when "Needs attention now" may not show them all, with a link to each
// severity's open incidents: an older open one (an extremism incident
// from last week) is not hidden behind newer ones (a morning's VPN
// attempts) without a word.
type attentionMore struct {
	Shown, Total int
	Links        []attentionLink
}

type attentionLink struct {
	N     int
	Label string
	Href  string
}

func (s *Server) attentionMore(route string, shown int) (*attentionMore, error) {
	m := &attentionMore{Shown: shown}
	for _, sev := range []bl.Severity{bl.SeverityCritical, bl.SeverityHigh} {
		_, n, err := s.o.Cases.IncidentPage(reports.IncidentQuery{Severity: sev, State: reports.CaseOpen, Route: route, Limit: 1})
		if err != nil {
			return nil, err
		}
		m.Total += n
		if n > 0 {
			m.Links = append(m.Links, attentionLink{n, sev.String(), listQuery{Period: "all", Severity: sev.String(), State: reports.CaseOpen}.href(1)})
		}
	}
	if m.Total <= shown {
		return nil, nil
	}
	return m, nil
}

func (s *Server) mailView(m reports.MailStatus) mailView {
	now := s.o.Now()
	switch {
	case m.Failing > 0 || (m.Pending > 0 && now.Sub(m.Oldest) > mailStuckAfter):
		t := fmt.Sprintf("Alert mail is NOT being delivered: %d message(s) waiting since %s.", m.Pending, m.Oldest.In(s.o.Location).Format("Mon 2 Jan 15:04"))
		if m.LastError != "" {
			t += " Last error: " + m.LastError + "."
		}
		return mailView{false, t + " Tell IT; check this page for new incidents meanwhile."}
	case m.LastSent.IsZero():
		return mailView{true, "No mail has been sent yet; nothing is waiting."}
	}
	t := "Alert mail is working: last delivered " + m.LastSent.In(s.o.Location).Format("Mon 2 Jan 15:04") + "."
	if m.Pending > 0 {
		t += fmt.Sprintf(" %d message(s) on their way.", m.Pending)
	}
	return mailView{true, t}
}

// chartRow is one theme's counts per day, for the table beside the chart.
type chartRow struct {
	Theme  string
	Colour string
	Days   []int
	Total  int
}

// chartColours have at least 3:1 contrast on white (WCAG non-text).
var chartColours = []string{"#1d70b8", "#d4351c", "#00703c", "#6f72af", "#b58840", "#505a5f"}

// themeChart draws incidents per day by theme as stacked bars, the
// chartThemes largest themes and "other".
func themeChart(counts []reports.DayCount, from time.Time, days int) (template.HTML, []chartRow) {
	totals := map[string]int{}
	for _, c := range counts {
		totals[c.Theme] += c.N
	}
	themes := make([]string, 0, len(totals))
	for t := range totals {
		themes = append(themes, t)
	}
	sort.Slice(themes, func(a, b int) bool {
		if totals[themes[a]] != totals[themes[b]] {
			return totals[themes[a]] > totals[themes[b]]
		}
		return themes[a] < themes[b]
	})
	index := map[string]int{}
	var rows []chartRow
	for i, t := range themes {
		if i == chartThemes {
			rows = append(rows, chartRow{Theme: "other"})
		}
		if i >= chartThemes {
			index[t] = chartThemes
			continue
		}
		index[t] = i
		rows = append(rows, chartRow{Theme: t})
	}
	for i := range rows {
		rows[i].Colour = chartColours[i]
		rows[i].Days = make([]int, days)
	}
	dayTotal := make([]int, days)
	for _, c := range counts {
		d := int(c.Day.Sub(from).Round(24*time.Hour) / (24 * time.Hour)) // DST days are 23 or 25 hours
		if d < 0 || d >= days {
			continue
		}
		r := &rows[index[c.Theme]]
		r.Days[d] += c.N
		r.Total += c.N
		dayTotal[d] += c.N
	}
	peak := 1
	for _, n := range dayTotal {
		peak = max(peak, n)
	}
	const w, h, left, bottom, top = 640, 220, 36, 24, 10
	bar := float64(w-left) / float64(days)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-labelledby="chart-title chart-desc" xmlns="http://www.w3.org/2000/svg">`, w, h)
	b.WriteString(`<title id="chart-title">Incidents per day by theme, last 30 days</title>`)
	fmt.Fprintf(&b, `<desc id="chart-desc">Stacked bars, one a day from %s; the table below gives the numbers. The busiest day had %d incident(s).</desc>`,
		from.Format("2 Jan"), peak)
	plot := float64(h - bottom - top)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#505a5f"/>`, left, h-bottom, w, h-bottom)
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" text-anchor="end" fill="#1b1b1b">%d</text>`, left-4, top+8, peak)
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" text-anchor="end" fill="#1b1b1b">0</text>`, left-4, h-bottom)
	for d := 0; d < days; d++ {
		y := float64(h - bottom)
		for i := range rows {
			n := rows[i].Days[d]
			if n == 0 {
				continue
			}
			bh := plot * float64(n) / float64(peak)
			y -= bh
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s, %s: %d</title></rect>`,
				float64(left)+float64(d)*bar+1, y, bar-2, bh, rows[i].Colour,
				template.HTMLEscapeString(from.AddDate(0, 0, d).Format("2 Jan")), template.HTMLEscapeString(rows[i].Theme), n)
		}
		// A label a week, counted back from today's (the last, set flush
		// with the right edge so it is not cut off).
		if (days-1-d)%7 == 0 {
			x, anchor := float64(left)+(float64(d)+0.5)*bar, "middle"
			if d == days-1 {
				x, anchor = w, "end"
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="11" text-anchor="%s" fill="#1b1b1b">%s</text>`,
				x, h-6, anchor, from.AddDate(0, 0, d).Format("2 Jan"))
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()), rows // built from numbers, fixed colours and escaped names only
}
