package console

import (
	"encoding/csv"
	"io"
	"strconv"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// writeEvidenceCSV writes an incident's attempts, one row each
// (spreadsheet-safe cells). A restricted-tier attempt names only the
// list ("a site on the IWF list", category iwf) and the SHA-256 of the
// matched entry, which the police can match against the list.
func writeEvidenceCSV(w io.Writer, c *reports.Case, evs []reports.StoredEvent, loc *time.Location) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"incident", "time", "kind", "source", "client", "device", "user", "group", "site", "url", "search_term",
		"action", "category", "list", "entry_sha256", "count"})
	for _, e := range evs {
		list, entry := e.List, ""
		if e.Restricted {
			list = restrictedList(e.Category)
			entry = e.Entry
		}
		row := []string{"#" + strconv.FormatInt(c.ID, 10), e.Time.In(loc).Format(time.RFC3339), e.Kind, e.Source, e.Client, e.Device, e.User, e.Group,
			e.Name, e.URL, e.SearchTerm, e.Action, e.Category, list, entry, strconv.FormatInt(e.Count, 10)}
		for i := range row {
			row[i] = reports.SafeCell(row[i])
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// restrictedList names a restricted-tier list by its category's
// description ("IWF child sexual abuse content list").
func restrictedList(cat string) string {
	if c, err := bl.ParseCategory(cat); err == nil {
		return c.Info().Description
	}
	return "restricted list"
}
