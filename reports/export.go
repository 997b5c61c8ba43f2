package reports

import (
	"encoding/csv"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"time"
)

// CSV exports follow RFC 4180 (encoding/csv quotes fields with commas,
// quotes or line breaks, and ends lines with CRLF) and are safe to open in
// a spreadsheet: a cell that starts with =, +, -, @, tab or carriage
// return gets a leading apostrophe, so it is shown as text, never run as a
// formula (OWASP "CSV injection").

// SafeCell escapes a value for a spreadsheet.
func SafeCell(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	return s
}

func newCSV(w io.Writer) *csv.Writer {
	c := csv.NewWriter(w)
	c.UseCRLF = true
	return c
}

func safeRow(cells []string) []string {
	for i, c := range cells {
		cells[i] = SafeCell(c)
	}
	return cells
}

var eventHeader = []string{"id", "time", "kind", "source", "client", "device", "user", "group", "name", "qtype", "url",
	"search_term", "action", "reason", "category", "severity", "route", "list", "restricted", "bypass", "count", "incident",
	"entry", "ref", "note", "id_source", "display", "year", "class"}

// EventsCSV writes events as CSV.
func (s *Store) EventsCSV(w io.Writer, f Filter, loc *time.Location) error {
	c := newCSV(w)
	if err := c.Write(eventHeader); err != nil {
		return err
	}
	err := s.Events(f, func(e StoredEvent) error {
		inc := ""
		if e.Incident != 0 {
			inc = strconv.FormatInt(e.Incident, 10)
		}
		return c.Write(safeRow([]string{strconv.FormatInt(e.ID, 10), e.Time.In(loc).Format(time.RFC3339), e.Kind, e.Source,
			e.Client, e.Device, e.User, e.Group, e.Name, e.QType, e.URL, e.SearchTerm, e.Action, e.Reason, e.Category,
			e.Severity.String(), e.Route, e.List, strconv.FormatBool(e.Restricted), strconv.FormatBool(e.Bypass),
			strconv.FormatInt(e.Count, 10), inc, e.Entry, e.Ref, e.Note, e.IDSource, e.Display, e.Year, e.Class}))
	})
	if err != nil {
		return err
	}
	c.Flush()
	return c.Error()
}

// EventsJSON writes events as JSON lines (one object a line).
func (s *Store) EventsJSON(w io.Writer, f Filter) error {
	enc := json.NewEncoder(w)
	return s.Events(f, func(e StoredEvent) error { return enc.Encode(e) })
}

// IncidentsCSV writes incidents as CSV.
func IncidentsCSV(w io.Writer, incs []Incident, loc *time.Location) error {
	c := newCSV(w)
	if err := c.Write([]string{"id", "status", "severity", "category", "what", "who", "client", "device", "user", "group",
		"route", "first", "last", "attempts", "samples", "id_source", "display", "year", "class"}); err != nil {
		return err
	}
	for i := range incs {
		in := &incs[i]
		if err := c.Write(safeRow([]string{strconv.FormatInt(in.ID, 10), in.Status, in.Severity.String(), in.Category,
			in.whatText(), in.Who, in.Client, in.Device, in.User, in.Group, in.Route, in.First.In(loc).Format(time.RFC3339),
			in.Last.In(loc).Format(time.RFC3339), strconv.FormatInt(in.Count, 10), strings.Join(in.Samples, " | "),
			in.IDSource, in.Display, in.Year, in.Class})); err != nil {
			return err
		}
	}
	c.Flush()
	return c.Error()
}

// IncidentsJSON writes incidents as JSON lines.
func IncidentsJSON(w io.Writer, incs []Incident) error {
	enc := json.NewEncoder(w)
	for i := range incs {
		if incs[i].Samples == nil {
			incs[i].Samples = []string{}
		}
		if err := enc.Encode(incs[i]); err != nil {
			return err
		}
	}
	return nil
}
