package reports

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
)

// Incident is a client's events in one category within the incident
// window.
type Incident struct {
	ID         int64       `json:"id"`
	Who        string      `json:"who"`
	Client     string      `json:"client"`
	Device     string      `json:"device,omitempty"`
	User       string      `json:"user,omitempty"`
	Group      string      `json:"group,omitempty"`
	IDSource   string      `json:"id_source,omitempty"` // which identity source named them (Event.IDSource)
	Display    string      `json:"display,omitempty"`
	Year       string      `json:"year,omitempty"`
	Class      string      `json:"class,omitempty"`
	Category   string      `json:"category"`
	Severity   bl.Severity `json:"severity"`
	Route      string      `json:"route"`
	Restricted bool        `json:"restricted,omitempty"`
	Bypass     bool        `json:"bypass,omitempty"`
	First      time.Time   `json:"first"`
	Last       time.Time   `json:"last"`
	Count      int64       `json:"count"`
	Samples    []string    `json:"samples"`
	Status     string      `json:"status"`

	alerted   int64
	lastAlert int64
}

// Incident statuses.
const (
	StatusNew          = "new"
	StatusAlerted      = "alerted"
	StatusReported     = "reported"
	StatusAcknowledged = "acknowledged"
)

const incidentCols = `id, who, client, device, user, grp, category, severity, route, restricted, bypass, first_ts, last_ts, count, samples, status, alerted_count, last_alert_ts, id_source, display, year_group, class`

type scanner interface{ Scan(...any) error }

// scanIncident reads a row that starts with incidentCols; extra receives
// any columns after them.
func scanIncident(r scanner, extra ...any) (Incident, error) {
	var i Incident
	var sev, restricted, bypass int
	var first, last int64
	var samples string
	err := r.Scan(append([]any{&i.ID, &i.Who, &i.Client, &i.Device, &i.User, &i.Group, &i.Category, &sev, &i.Route,
		&restricted, &bypass, &first, &last, &i.Count, &samples, &i.Status, &i.alerted, &i.lastAlert,
		&i.IDSource, &i.Display, &i.Year, &i.Class}, extra...)...)
	if err != nil {
		return i, err
	}
	i.Severity, i.Restricted, i.Bypass = bl.Severity(sev), restricted != 0, bypass != 0
	i.First, i.Last = fromMS(first), fromMS(last)
	_ = json.Unmarshal([]byte(samples), &i.Samples)
	if i.Restricted {
		i.Samples = nil
	}
	return i, nil
}

// Filter selects events or incidents for export.
type Filter struct {
	Since, Until time.Time // Until zero: now
	Client       string    // IP address, device or user name
	Category     string
	Status       string // incidents only
	All          bool   // events: probes, the query log and mistake reports too
	Mistakes     bool   // events: only "report a mistake" forms
	Limit        int
}

// Incidents lists incidents whose last event is in the filter's period,
// newest first.
func (s *Store) Incidents(f Filter) ([]Incident, error) {
	q := `SELECT ` + incidentCols + ` FROM incidents WHERE last_ts >= ?`
	args := []any{ms(f.Since)}
	if !f.Until.IsZero() {
		q += ` AND first_ts < ?`
		args = append(args, ms(f.Until))
	}
	if f.Client != "" {
		q += ` AND (client = ? OR device = ? OR user = ?)`
		args = append(args, f.Client, f.Client, f.Client)
	}
	if f.Category != "" {
		q += ` AND category = ?`
		args = append(args, f.Category)
	}
	if f.Status != "" {
		q += ` AND status = ?`
		args = append(args, f.Status)
	}
	q += ` ORDER BY last_ts DESC, id DESC`
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.db.Query(q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Incident
	for rows.Next() {
		i, err := scanIncident(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, i)
	}
	return out, rows.Err()
}

// Acknowledge marks incidents as dealt with: the attempts so far need no
// more alerts. An attempt after the acknowledgement reopens the incident
// and is alerted as a new one (Alerter.Check): an acknowledgement never
// silences what happens next.
func (s *Store) Acknowledge(ids ...int64) (int64, error) {
	var n int64
	now := ms(time.Now())
	for _, id := range ids {
		res, err := s.db.Exec(`UPDATE incidents SET status = ?, alerted_count = count, acked_ts = ? WHERE id = ?`, StatusAcknowledged, now, id)
		if err != nil {
			return n, err
		}
		k, _ := res.RowsAffected()
		n += k
	}
	return n, nil
}

// StoredEvent is an event as exported.
type StoredEvent struct {
	ID         int64       `json:"id"`
	Time       time.Time   `json:"time"`
	Kind       string      `json:"kind"` // breach, probe, log
	Source     string      `json:"source"`
	Protocol   string      `json:"protocol,omitempty"`
	Client     string      `json:"client"`
	Device     string      `json:"device,omitempty"`
	User       string      `json:"user,omitempty"`
	Group      string      `json:"group,omitempty"`
	IDSource   string      `json:"id_source,omitempty"`
	Display    string      `json:"display,omitempty"`
	Year       string      `json:"year,omitempty"`
	Class      string      `json:"class,omitempty"`
	Name       string      `json:"name"`
	QType      string      `json:"qtype,omitempty"`
	URL        string      `json:"url,omitempty"`
	SearchTerm string      `json:"search_term,omitempty"`
	Action     string      `json:"action"`
	Reason     string      `json:"reason,omitempty"`
	Category   string      `json:"category,omitempty"`
	Severity   bl.Severity `json:"severity"`
	Route      string      `json:"route,omitempty"`
	List       string      `json:"list,omitempty"`
	Restricted bool        `json:"restricted,omitempty"`
	Bypass     bool        `json:"bypass,omitempty"`
	Count      int64       `json:"count"`
	Incident   int64       `json:"incident,omitempty"`
	// Entry is the list entry that matched; for the restricted tier the
	// SHA-256 (hex) of it, which the police can match against the list.
	Entry string `json:"entry,omitempty"`
	Ref   string `json:"ref,omitempty"`  // the block page's reference code
	Note  string `json:"note,omitempty"` // a mistake report's "why"
}

var kindNames = map[int]string{kindBreach: "breach", kindProbe: "probe", kindQueryLog: "log", kindReport: "mistake"}

// Events lists events in the filter's period, oldest first, calling fn for
// each (so exports stream). Restricted-tier names are replaced by the
// list's description: they are never shown.
func (s *Store) Events(f Filter, fn func(StoredEvent) error) error {
	q := `SELECT ` + eventCols + ` FROM events WHERE ts >= ?`
	args := []any{ms(f.Since)}
	switch {
	case f.Mistakes:
		q += ` AND kind = 4`
	case !f.All:
		q += ` AND kind = 1`
	}
	if !f.Until.IsZero() {
		q += ` AND ts < ?`
		args = append(args, ms(f.Until))
	}
	if f.Client != "" {
		q += ` AND (client = ? OR device = ? OR user = ?)`
		args = append(args, f.Client, f.Client, f.Client)
	}
	if f.Category != "" {
		q += ` AND category = ?`
		args = append(args, f.Category)
	}
	q += ` ORDER BY ts, id`
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.db.Query(q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return rows.Err()
}

// eventCols are the columns scanEvent reads.
const eventCols = `id, ts, kind, source, protocol, client, device, user, grp, name, qtype, url, search, action, reason, category,
		severity, route, list, flags, count, incident_id, entry, ref, note, id_source, display, year_group, class`

// scanEvent reads a row of eventCols, replacing restricted-tier names by
// the list's description.
func scanEvent(r scanner) (StoredEvent, error) {
	var e StoredEvent
	var ts int64
	var kind, sev, flags int
	var inc sql.NullInt64
	if err := r.Scan(&e.ID, &ts, &kind, &e.Source, &e.Protocol, &e.Client, &e.Device, &e.User, &e.Group, &e.Name, &e.QType,
		&e.URL, &e.SearchTerm, &e.Action, &e.Reason, &e.Category, &sev, &e.Route, &e.List, &flags, &e.Count, &inc,
		&e.Entry, &e.Ref, &e.Note, &e.IDSource, &e.Display, &e.Year, &e.Class); err != nil {
		return e, err
	}
	e.Time, e.Kind, e.Severity = fromMS(ts), kindNames[kind], bl.Severity(sev)
	e.Restricted, e.Bypass, e.Incident = flags&flagRestricted != 0, flags&flagBypass != 0, inc.Int64
	if e.Restricted || isRestricted(e.Category) {
		e.Restricted = true
		e.Name, e.URL, e.SearchTerm, e.List = restrictedText(e.Category), "", "", ""
		if !isSHA256Hex(e.Entry) {
			e.Entry = ""
		}
	}
	return e, nil
}

func isRestricted(cat string) bool {
	c, err := bl.ParseCategory(cat)
	return err == nil && c.Restricted()
}

// restrictedText is what mail and exports say instead of a restricted name.
func restrictedText(cat string) string {
	if c, err := bl.ParseCategory(cat); err == nil && c.Restricted() {
		return c.Info().Title
	}
	return "a site on a restricted list"
}

// categoryTitle is a category in plain words.
func categoryTitle(cat string) string {
	if c, err := bl.ParseCategory(cat); err == nil {
		return c.Info().Title
	}
	if cat == "" {
		return "uncategorised"
	}
	return cat
}

// whoText describes an incident's client in one line: "Amira Khan (Year
// 8, 8B) on LIB-LAPTOP-12, 10.1.2.3, group students" where the directory
// knows the person; plainly "only the device is known" or "only the
// address is known" where nobody was named.
func (i *Incident) whoText() string {
	s := personText(i.User, i.Display, i.Year, i.Class)
	switch {
	case s != "" && i.Device != "":
		s += " on " + i.Device
	case s == "" && i.Device != "" && i.IDSource == SourceDeviceToken:
		s = "device " + i.Device + " (a school device off-site, through its own DNS link; not who used it)"
	case s == "" && i.Device != "":
		s = "device " + i.Device + " (only the device is known, not who used it)"
	case s == "" && i.Client != "":
		s = i.Client + " (only the address is known)"
	case s == "":
		s = "unknown client"
	}
	if (i.User != "" || i.Device != "") && i.Client != "" {
		s += ", " + i.Client
	}
	if i.Group != "" {
		s += ", group " + i.Group
	}
	if i.IDSource != "" && i.User != "" {
		s += ", named by " + sourceText(i.IDSource)
	}
	return s
}

// personText is "Amira Khan (Year 8, 8B)", "Amira Khan (amira.k)" without
// year or class, or the bare user name without a display name.
func personText(user, display, year, class string) string {
	if user == "" {
		return ""
	}
	if display == "" {
		return user
	}
	var in []string
	for _, p := range []string{year, class} {
		if p != "" {
			in = append(in, p)
		}
	}
	if len(in) == 0 {
		in = append(in, user)
	}
	return display + " (" + strings.Join(in, ", ") + ")"
}

// sourceText is an identity source in plain words.
// SourceDeviceToken is the identity source of events from an enrolled
// school device off-site (DoH/DoT with its device token).
const SourceDeviceToken = "device token"

func sourceText(src string) string {
	switch src {
	case SourceDeviceToken:
		return "the school device's own DNS link (off-site)"
	case "login":
		return "proxy login"
	case "signin":
		return "sign-in page (school account)"
	case "radius":
		return "Wi-Fi login (RADIUS)"
	case "directory":
		return "directory"
	case "dhcp":
		return "DHCP lease"
	}
	return src
}

// whatText says what was attempted, never a restricted name.
func (i *Incident) whatText() string {
	if i.Restricted || isRestricted(i.Category) {
		return restrictedText(i.Category)
	}
	return categoryTitle(i.Category)
}
