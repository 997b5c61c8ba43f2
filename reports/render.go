package reports

import (
	"bytes"
	"fmt"
	htmltemplate "html/template"
	"strings"
	texttemplate "text/template"
	"time"
	"unicode"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
)

// Rendering: every mail has a plain-text part and an HTML part laid out for
// a phone (one column, large type, no images). Restricted-tier names never
// reach the templates: Incident.whatText and the samples (empty for the
// restricted tier) are all they see.

// view is one incident as the templates show it.
type view struct {
	Severity string
	Who      string
	When     string
	What     string
	Samples  []string
	Attempts int64
	Note     string
	Ref      string // "#12"
	Link     string // the console's page for it ("" without console.url)
}

func (r *renderer) incidentView(i *Incident, attempts int64, first, last time.Time) view {
	v := view{Severity: strings.ToUpper(i.Severity.String()), Who: mailLine(i.whoText()), What: mailLine(i.whatText()), Attempts: attempts,
		Ref: incidentRef(i.ID), Link: r.link(i.ID)}
	v.When = r.span(first, last)
	if !i.Restricted && !isRestricted(i.Category) {
		for _, s := range i.Samples {
			if tellingSample(s) {
				s = unlinked(s)
			}
			v.Samples = append(v.Samples, mailLine(s))
		}
	}
	return v
}

// mailLine is text that comes from outside Gatehouse (a device or user
// name from DHCP, RADIUS or the directory, a URL, a search term, the note
// of a "report a mistake" form) as mail shows it: on one line, so that it
// cannot add lines of its own to a message (a fake "Do:" or "What to do"
// in the plain-text part, a header in the subject). Line breaks and other
// control characters become spaces, runs of spaces one, and the Unicode
// controls that reorder text (bidirectional overrides and isolates) are
// dropped. Every field of a view, a mistakeView and the digest's tables
// goes through it; the templates add the only line breaks.
func mailLine(s string) string {
	clean := true
	for _, c := range s {
		if c < ' ' || c == 0x7f || c >= 0x80 && (unicode.IsControl(c) || unicode.IsSpace(c) || bidiControl(c)) {
			clean = false
			break
		}
	}
	if clean && !strings.Contains(s, "  ") && strings.TrimSpace(s) == s {
		return s
	}
	s = strings.Map(func(c rune) rune {
		switch {
		case bidiControl(c):
			return -1
		case unicode.IsControl(c):
			return ' '
		}
		return c
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

// unlinked is text a pupil typed (a search term, a page's words, the note
// of a "report a mistake" form) with anything a mail program would make a
// link of written so that it does not: "https://" as "hxxps://", and the
// dots of a name as "[.]". A pupil cannot then put a sign-in page of their
// own, one click away, into the DSL's alert beside the console's real link
// ("how to kill myself https://console.school.example.evil.test"). The
// blocked sites and pages an alert names are left as they are: the lists
// chose those.
func unlinked(s string) string {
	if !strings.Contains(s, ".") && !strings.Contains(s, "//") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.' && i > 0 && i+1 < len(s) && isNameByte(s[i-1]) && isNameByte(s[i+1]):
			b.WriteString("[.]")
		case (c == 'h' || c == 'H') && i+4 <= len(s) && strings.EqualFold(s[i:i+4], "http") && i+4 < len(s) && (strings.HasPrefix(s[i+4:], "://") || len(s) > i+5 && (s[i+4] == 's' || s[i+4] == 'S') && strings.HasPrefix(s[i+5:], "://")):
			b.WriteString(s[i:i+1] + "xx")
			i += 2 // "tt"
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isNameByte(c byte) bool {
	return 'a' <= c|0x20 && c|0x20 <= 'z' || '0' <= c && c <= '9' || c == '-' || c >= 0x80
}

// bidiControl reports whether c is a Unicode control that reorders the
// text around it (embeddings, overrides, isolates and marks).
func bidiControl(c rune) bool {
	return c >= 0x202a && c <= 0x202e || c >= 0x2066 && c <= 0x2069 || c == 0x200e || c == 0x200f || c == 0x061c
}

type renderer struct {
	school  string
	loc     *time.Location
	console string // console.url: links to incidents ("": none)
}

// incidentRef is an incident's reference as mail gives it.
func incidentRef(id int64) string { return fmt.Sprintf("#%d", id) }

// link is the console's page for an incident, "" without console.url.
func (r *renderer) link(id int64) string {
	if r.console == "" || id == 0 {
		return ""
	}
	return strings.TrimRight(r.console, "/") + fmt.Sprintf("/incidents/%d", id)
}

func (r *renderer) local(t time.Time) string {
	return t.In(r.loc).Format("Mon 2 Jan 15:04")
}

func (r *renderer) span(a, b time.Time) string {
	a, b = a.In(r.loc), b.In(r.loc)
	if b.Sub(a) < time.Minute {
		return a.Format("Mon 2 Jan 15:04")
	}
	if a.YearDay() == b.YearDay() && a.Year() == b.Year() {
		return a.Format("Mon 2 Jan 15:04") + "–" + b.Format("15:04")
	}
	return a.Format("Mon 2 Jan 15:04") + " – " + b.Format("Mon 2 Jan 15:04")
}

// advice is what the school should do about an incident.
func advice(i *Incident) string {
	c, err := bl.ParseCategory(i.Category)
	switch {
	case i.Route == string(bl.RouteHeadteacher):
		return "This concerns a member of staff: follow your allegations-against-staff procedure (the headteacher leads; do not investigate alone)."
	case i.Restricted || (err == nil && c.Restricted()):
		return "Follow your child-protection procedure now. Do not try to visit the site. Record what you do; the police may need the export (gatehouse incidents --json)."
	case err == nil && c == bl.SelfHarm:
		return "A child may be at risk: follow your child-protection procedure and speak to the child today."
	case err == nil && c == bl.Extremism:
		return "Follow your child-protection procedure and consider the Prevent duty."
	case i.Bypass || (err == nil && c.Bypass()):
		return "Someone tried to get around the filter: check the device and follow your acceptable-use policy."
	case i.Route == string(bl.RouteIT):
		return "Check the device for malware or a compromised account."
	case err == nil && c.Info().Kind == bl.KindPolicy:
		return "Blocked by school policy: usually no action is needed unless it becomes a pattern."
	}
	return "Follow your child-protection procedure and record the outcome."
}

type alertData struct {
	School   string
	Title    string
	FollowUp bool
	Since    string
	V        view
	Advice   string
}

var alertText = texttemplate.Must(texttemplate.New("alert").Parse(`{{.Title}}

Incident: {{.V.Ref}}
{{template "link" .V}}
Who:      {{.V.Who}}
When:     {{.V.When}}
What:     {{.V.What}}
Attempts: {{.V.Attempts}}{{if .FollowUp}} more since the alert at {{.Since}}{{end}}
{{- range .V.Samples}}
          {{.}}{{end}}

What to do: {{.Advice}}

-- 
Gatehouse web filter, {{.School}}. Severity {{.V.Severity}}.
` + linkText))

// linkText and linkHTML give an incident's console link, or say plainly
// that there is none (console.url not set). The link grants nothing: the
// console asks for sign-in first.
const linkText = `{{define "link"}}{{if .Link}}Open:     {{.Link}} (the console asks you to sign in){{else}}Open:     no link, as console.url is not set: find {{.Ref}} under Incidents in the console{{end}}{{end}}`

const linkHTML = `{{define "link"}}<p><b>Incident {{.Ref}}</b>: {{if .Link}}<a href="{{.Link}}">open it in the console</a> (the console asks you to sign in){{else}}no link, as console.url is not set: find {{.Ref}} under Incidents in the console{{end}}</p>{{end}}`

const htmlHead = `<!DOCTYPE html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:-apple-system,Segoe UI,Roboto,Arial,sans-serif;font-size:16px;line-height:1.4;margin:0;padding:12px;color:#111;max-width:640px}
h1{font-size:20px;margin:0 0 8px}h2{font-size:17px;margin:18px 0 6px}.sev{display:inline-block;padding:1px 6px;border-radius:4px;color:#fff;font-size:13px;font-weight:bold}
.CRITICAL{background:#a00}.HIGH{background:#d35400}.MEDIUM{background:#b7950b}.LOW,.INFO{background:#555}
.inc{border-top:1px solid #ddd;padding:8px 0}.muted{color:#555;font-size:14px}.do{background:#fff4e5;border-left:4px solid #d35400;padding:8px;margin:12px 0}
table{border-collapse:collapse;width:100%}td{padding:3px 4px;border-bottom:1px solid #eee;font-size:15px}td.n{text-align:right}</style></head><body>`

var alertHTML = htmltemplate.Must(htmltemplate.New("alert").Parse(htmlHead + `
<h1><span class="sev {{.V.Severity}}">{{.V.Severity}}</span> {{.Title}}</h1>
{{template "link" .V}}
<div class="inc"><b>Who:</b> {{.V.Who}}<br><b>When:</b> {{.V.When}}<br><b>What:</b> {{.V.What}}<br>
<b>Attempts:</b> {{.V.Attempts}}{{if .FollowUp}} more since the alert at {{.Since}}{{end}}
{{- if .V.Samples}}<br><span class="muted">{{range $i, $s := .V.Samples}}{{if $i}} · {{end}}{{$s}}{{end}}</span>{{end}}</div>
<div class="do"><b>What to do:</b> {{.Advice}}</div>
<p class="muted">Gatehouse web filter, {{.School}}.</p></body></html>` + linkHTML))

// alert renders an incident's alert: a first alert, a follow-up (more
// attempts since the last alert) or, with reopened, new attempts after the
// incident was acknowledged (alerted as a first alert is).
func (r *renderer) alert(i *Incident, attempts int64, followUp, reopened bool, lastAlert time.Time) (subject, text, html string, err error) {
	v := r.incidentView(i, attempts, i.First, i.Last)
	title := fmt.Sprintf("%s: %s", v.What, v.Who)
	switch {
	case followUp:
		title = fmt.Sprintf("Follow-up: %d more attempts, %s: %s", attempts, v.What, v.Who)
	case reopened:
		title = fmt.Sprintf("New attempts after the incident was acknowledged, %s: %s", v.What, v.Who)
	}
	d := alertData{School: r.school, Title: title, FollowUp: followUp, Since: lastAlert.In(r.loc).Format("15:04"), V: v, Advice: advice(i)}
	kind := "alert"
	if followUp {
		kind = "follow-up"
	}
	subject = fmt.Sprintf("[%s] %s %s: %s – %s", r.school, v.Severity, kind, v.What, shortWho(i))
	var tb, hb bytes.Buffer
	if err := alertText.Execute(&tb, d); err != nil {
		return "", "", "", err
	}
	if err := alertHTML.Execute(&hb, d); err != nil {
		return "", "", "", err
	}
	return subject, tb.String(), hb.String(), nil
}

// shortWho is who an incident is about in a subject line.
func shortWho(i *Incident) string {
	switch {
	case i.User != "":
		if i.Display != "" {
			return mailLine(i.Display)
		}
		return mailLine(i.User)
	case i.Device != "":
		return mailLine(i.Device)
	}
	return i.Client
}

// digestData is one digest for one role.
type digestData struct {
	School, Schedule string
	Period           string
	Summary          string
	Incidents        []view
	More             int // listed incidents over MaxListed
	Lower            int // low-severity incidents, counted in the tables only
	ByCategory       []countRow
	ByGroup          []countRow
	TopClients       []countRow
	Total, Prev      int64
	Trend            string
	Advice           []string
	Empty            bool
	Mistakes         []mistakeView // "report a mistake" forms (the it role's digests)
	MoreMistakes     int
	Pending          int          // mistake reports waiting for IT's review, any period (the it role's digests)
	Health           []healthView // problems now: Gatehouse is not fully working
	Audit            string       // the audit log's fingerprint, "ID:HASH16" ("" without one)
}

type countRow struct {
	Name string
	N    int64
}

var digestText = texttemplate.Must(texttemplate.New("digest").Parse(`{{.School}}: {{.Schedule}} web filter report
{{.Period}}

{{.Summary}}
{{if .Health}}
GATEHOUSE IS NOT FULLY WORKING: filtering or reporting may be incomplete.
IT is told about each problem that lasts.
{{range .Health}}- {{.Message}} (since {{.Since}})
{{end}}{{end}}{{if .Empty}}{{if .Health}}
No incidents in this period, but see the problems above: attempts may
have gone unseen.
{{else}}
No incidents in this period. Gatehouse is running and filtering; this
message confirms that reports are being delivered.
{{end}}{{else}}
INCIDENTS (most serious first)
{{range .Incidents}}
[{{.Severity}}] {{.What}}, {{.Attempts}} attempt(s)
  Ref:  {{.Ref}}{{if .Link}}, {{.Link}}{{end}}
  Who:  {{.Who}}
  When: {{.When}}
{{- range .Samples}}
        {{.}}{{end}}
  Do:   {{.Note}}
{{end}}{{if .More}}
...and {{.More}} more incidents (gatehouse incidents --since ... lists them all).
{{end}}{{if .Lower}}
{{.Lower}} low-risk incident(s) are only counted in the tables below.
{{end}}
BY CATEGORY (attempts)
{{range .ByCategory}}  {{.Name}}: {{.N}}
{{end}}
BY GROUP (attempts)
{{range .ByGroup}}  {{.Name}}: {{.N}}
{{end}}
TOP CLIENTS (attempts)
{{range .TopClients}}  {{.Name}}: {{.N}}
{{end}}
TREND: {{.Trend}}

WHAT TO DO
{{range .Advice}}- {{.}}
{{end}}{{end}}{{if .Mistakes}}
REPORTED AS MISTAKES (from the block page)
{{range .Mistakes}}
{{.Site}}{{if .Category}} ({{.Category}}){{end}}
  Group: {{.Group}}
  When:  {{.When}}
  Ref:   {{.Ref}}
  Why:   {{.Note}}
{{end}}{{if .MoreMistakes}}
...and {{.MoreMistakes}} more (gatehouse events --mistakes lists them all).
{{end}}{{end}}{{if .Pending}}
MIS-BLOCK QUEUE: {{.Pending}} report(s) wait for review in the console
(IT, Mis-block queue).
{{end}}{{if .Audit}}
Audit log fingerprint (keep this mail; for an auditor): {{.Audit}}
{{end}}
-- 
Gatehouse web filter, {{.School}}.
`))

var digestHTML = htmltemplate.Must(htmltemplate.New("digest").Parse(htmlHead + `
<h1>{{.School}}: {{.Schedule}} web filter report</h1>
<p class="muted">{{.Period}}</p>
<p><b>{{.Summary}}</b></p>
{{if .Health}}<div class="do"><b>Gatehouse is not fully working:</b> filtering or reporting may be incomplete. IT is told about each problem that lasts.
<ul>{{range .Health}}<li>{{.Message}} (since {{.Since}})</li>{{end}}</ul></div>
{{end}}{{if .Empty}}{{if .Health}}<p>No incidents in this period, but see the problems above: attempts may have gone unseen.</p>
{{else}}<p>No incidents in this period. Gatehouse is running and filtering; this message confirms that reports are being delivered.</p>
{{end}}{{else}}<h2>Incidents, most serious first</h2>
{{range .Incidents}}<div class="inc"><span class="sev {{.Severity}}">{{.Severity}}</span> <b>{{.What}}</b>, {{.Attempts}} attempt(s)<br>
<b>Incident:</b> {{if .Link}}<a href="{{.Link}}">{{.Ref}}</a>{{else}}{{.Ref}}{{end}}<br>
<b>Who:</b> {{.Who}}<br><b>When:</b> {{.When}}
{{- if .Samples}}<br><span class="muted">{{range $i, $s := .Samples}}{{if $i}} · {{end}}{{$s}}{{end}}</span>{{end}}
<br><span class="muted">{{.Note}}</span></div>
{{end}}{{if .More}}<p class="muted">…and {{.More}} more incidents (<code>gatehouse incidents</code> lists them all).</p>{{end}}
{{if .Lower}}<p class="muted">{{.Lower}} low-risk incident(s) are only counted in the tables below.</p>{{end}}
<h2>By category</h2><table>{{range .ByCategory}}<tr><td>{{.Name}}</td><td class="n">{{.N}}</td></tr>{{end}}</table>
<h2>By group</h2><table>{{range .ByGroup}}<tr><td>{{.Name}}</td><td class="n">{{.N}}</td></tr>{{end}}</table>
<h2>Top clients</h2><table>{{range .TopClients}}<tr><td>{{.Name}}</td><td class="n">{{.N}}</td></tr>{{end}}</table>
<h2>Trend</h2><p>{{.Trend}}</p>
<div class="do"><b>What to do</b><ul>{{range .Advice}}<li>{{.}}</li>{{end}}</ul></div>
{{end}}{{if .Mistakes}}<h2>Reported as mistakes (from the block page)</h2>
{{range .Mistakes}}<div class="inc"><b>{{.Site}}</b>{{if .Category}} <span class="muted">({{.Category}})</span>{{end}}<br>
<b>Group:</b> {{.Group}}<br><b>When:</b> {{.When}}<br><b>Ref:</b> {{.Ref}}<br><b>Why:</b> {{.Note}}</div>
{{end}}{{if .MoreMistakes}}<p class="muted">…and {{.MoreMistakes}} more (<code>gatehouse events --mistakes</code> lists them all).</p>{{end}}
{{end}}{{if .Pending}}<p><b>Mis-block queue:</b> {{.Pending}} report(s) wait for review in the console (IT, Mis-block queue).</p>
{{end}}{{if .Audit}}<p class="muted">Audit log fingerprint (keep this mail; for an auditor): <code>{{.Audit}}</code></p>
{{end}}<p class="muted">Gatehouse web filter, {{.School}}.</p></body></html>`))

func (r *renderer) digest(d *digestData) (text, html string, err error) {
	var tb, hb bytes.Buffer
	if err := digestText.Execute(&tb, d); err != nil {
		return "", "", err
	}
	if err := digestHTML.Execute(&hb, d); err != nil {
		return "", "", err
	}
	return tb.String(), hb.String(), nil
}
