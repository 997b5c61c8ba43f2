package main

import (
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/console"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// openReports opens the breach store for a CLI command (no background
// work). A missing database is an error, not a new empty file.
func (c *cli) openReports(cfg *config.Config) (*reports.Service, int) {
	if _, err := os.Stat(cfg.Database); errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(c.stderr, "no breach database at %s yet (gatehouse serve creates it)\n", cfg.Database)
		return nil, exitFailure
	}
	p, err := reports.FromConfig(cfg, nil)
	if err != nil {
		// The SMTP secret is only needed to send; reading commands go on.
		p, _ = reports.FromConfig(withoutSMTPPassword(cfg), nil)
	}
	svc, err := reports.Tools(cfg.Database, p)
	if err != nil {
		fmt.Fprintln(c.stderr, err)
		return nil, exitFailure
	}
	warnPurge(c.stderr, svc)
	return svc, exitOK
}

// warnPurge says on w when the retention purge Tools ran first failed:
// what is shown may then include records past their retention.
func warnPurge(w io.Writer, svc *reports.Service) {
	if svc.PurgeErr != nil {
		fmt.Fprintf(w, "warning: the retention purge failed, records past reports.retention may be shown: %v\n", svc.PurgeErr)
	}
}

func withoutSMTPPassword(cfg *config.Config) *config.Config {
	c2 := *cfg
	c2.Reports.SMTP.Password = nil
	return &c2
}

// parseSince reads --since/--until: a duration back from now ("24h",
// "7d") or a date/time ("2026-11-20", RFC 3339) in the school's zone.
func parseSince(s string, now time.Time, loc *time.Location) (time.Time, error) {
	var d config.Duration
	if err := d.UnmarshalText([]byte(s)); err == nil {
		return now.Add(-d.D()), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("invalid time %q (want a duration such as 24h or 7d, or a date such as 2026-11-20)", s)
}

// auditCLI writes what the person at the command line is about to see,
// or has changed, to the console's audit log st, as the console does for
// its pages: an auditor sees every look at a pupil's record, whichever
// door it came through. A record is not shown when its entry cannot be
// written, nor when st is nil (auditLog could not open it, and said so).
func (c *cli) auditCLI(st *console.Store, action, target, detail string) bool {
	if st == nil {
		return false
	}
	if err := st.Audit(console.Entry{Time: time.Now(), Actor: cliActor(), Addr: "cli", Action: action, Target: target, Detail: detail}); err != nil {
		c.auditFailed(err)
		return false
	}
	return true
}

// auditLog opens the console's audit log in db for auditCLI; nil, once
// it has said why, when it cannot.
func (c *cli) auditLog(db *sql.DB) *console.Store {
	st, err := console.NewStore(db)
	if err != nil {
		c.auditFailed(err)
		return nil
	}
	return st
}

func (c *cli) auditFailed(err error) {
	fmt.Fprintf(c.stderr, "nothing shown: the audit log could not be written (%v)\n", err)
}

// lookDetail describes an export's filter for the audit log.
func lookDetail(what string, f *exportFlags, extra ...string) string {
	d := what + " since " + f.since
	if f.until != "" {
		d += " until " + f.until
	}
	if f.category != "" {
		d += " category " + f.category
	}
	for _, e := range extra {
		if e != "" {
			d += " " + e
		}
	}
	switch {
	case f.csv:
		d += " as CSV"
	case f.json:
		d += " as JSON"
	}
	return d
}

// lookTarget is an export's audit target: whose record, or "all".
func lookTarget(what string, f *exportFlags) string {
	if f.client != "" {
		return what + ":" + f.client
	}
	return what + ":all"
}

// lookAction is "export" for a file format, "view" for the table.
func lookAction(f *exportFlags) string {
	if f.csv || f.json {
		return "export"
	}
	return "view"
}

type exportFlags struct {
	since, until, client, category string
	csv, json                      bool
}

func (c *cli) exportFilter(f *exportFlags, cfg *config.Config) (reports.Filter, bool) {
	now := time.Now()
	var flt reports.Filter
	var err error
	if flt.Since, err = parseSince(f.since, now, cfg.Location()); err != nil {
		fmt.Fprintln(c.stderr, err)
		return flt, false
	}
	if f.until != "" {
		if flt.Until, err = parseSince(f.until, now, cfg.Location()); err != nil {
			fmt.Fprintln(c.stderr, err)
			return flt, false
		}
	}
	if f.csv && f.json {
		fmt.Fprintln(c.stderr, "choose one of --csv and --json")
		return flt, false
	}
	flt.Client, flt.Category = f.client, strings.ToLower(f.category)
	return flt, true
}

// events exports stored events.
func (c *cli) events(args []string) int {
	fs := c.flags("events")
	var f exportFlags
	fs.StringVar(&f.since, "since", "24h", "from this long ago (24h, 7d) or this date")
	fs.StringVar(&f.until, "until", "", "up to this long ago or this date (default now)")
	fs.StringVar(&f.client, "client", "", "only this IP address, device or user")
	fs.StringVar(&f.category, "category", "", "only this category")
	fs.BoolVar(&f.csv, "csv", false, "CSV (RFC 4180, safe to open in a spreadsheet)")
	fs.BoolVar(&f.json, "json", false, "JSON, one event a line")
	all := fs.Bool("all", false, "include automatic probes, the query log and mistake reports, not only breaches")
	mistakes := fs.Bool("mistakes", false, `only "report a mistake" forms from the block page (with reference and note)`)
	if pos, err := parse(fs, args); err != nil || len(pos) > 0 {
		return exitUsage
	}
	cfg, code := c.loadConfig()
	if code != exitOK {
		return code
	}
	flt, ok := c.exportFilter(&f, cfg)
	if !ok {
		return exitUsage
	}
	flt.All, flt.Mistakes = *all, *mistakes
	if *all && *mistakes {
		fmt.Fprintln(c.stderr, "choose one of --all and --mistakes")
		return exitUsage
	}
	svc, code := c.openReports(cfg)
	if code != exitOK {
		return code
	}
	defer svc.Close()
	kind := ""
	switch {
	case *all:
		kind = "(all kinds)"
	case *mistakes:
		kind = "(mistake reports)"
	}
	// Whose records the output holds, for the audit row, read first over
	// the same period (fixed now, so both readings see the same events).
	if flt.Until.IsZero() {
		flt.Until = time.Now()
	}
	var people console.Shown
	if err := svc.Store.Events(flt, func(e reports.StoredEvent) error { people.Add(eventPerson(e)); return nil }); err != nil {
		fmt.Fprintln(c.stderr, err)
		return exitFailure
	}
	if !c.auditCLI(c.auditLog(svc.Store.DB()), lookAction(&f), lookTarget("events", &f), people.Detail(lookDetail("events", &f, kind))) {
		return exitFailure
	}
	var err error
	switch {
	case f.csv:
		err = svc.Store.EventsCSV(c.stdout, flt, cfg.Location())
	case f.json:
		err = svc.Store.EventsJSON(c.stdout, flt)
	case *mistakes:
		err = c.mistakesTable(svc.Store, flt, cfg.Location())
	default:
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tCLIENT\tGROUP\tCATEGORY\tSEVERITY\tACTION\tNAME\tCOUNT")
		n := 0
		err = svc.Store.Events(flt, func(e reports.StoredEvent) error {
			n++
			who := eventWho(e)
			name := e.Name
			if e.SearchTerm != "" {
				name += " (search: " + e.SearchTerm + ")"
			}
			_, werr := fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", e.Time.In(cfg.Location()).Format("2006-01-02 15:04:05"),
				who, e.Group, e.Category, e.Severity, e.Action, reports.SafeCell(name), e.Count)
			return werr
		})
		tw.Flush()
		if err == nil && n == 0 {
			fmt.Fprintln(c.stderr, "no events in that period")
		}
	}
	if err != nil {
		fmt.Fprintln(c.stderr, err)
		return exitFailure
	}
	return exitOK
}

// incidents lists incidents, or acknowledges them with --ack.
func (c *cli) incidents(args []string) int {
	fs := c.flags("incidents")
	var f exportFlags
	fs.StringVar(&f.since, "since", "7d", "incidents active since this long ago (24h, 7d) or this date")
	fs.StringVar(&f.until, "until", "", "and begun before this long ago or this date")
	fs.StringVar(&f.client, "client", "", "only this IP address, device or user")
	fs.StringVar(&f.category, "category", "", "only this category")
	fs.BoolVar(&f.csv, "csv", false, "CSV (RFC 4180, safe to open in a spreadsheet)")
	fs.BoolVar(&f.json, "json", false, "JSON, one incident a line")
	status := fs.String("status", "", "only this status: new, alerted, reported or acknowledged")
	ack := fs.String("ack", "", "mark these incidents (comma-separated ids) as acknowledged")
	if pos, err := parse(fs, args); err != nil || len(pos) > 0 {
		return exitUsage
	}
	cfg, code := c.loadConfig()
	if code != exitOK {
		return code
	}
	svc, code := c.openReports(cfg)
	if code != exitOK {
		return code
	}
	defer svc.Close()
	if *ack != "" {
		var ids []int64
		for _, s := range strings.Split(*ack, ",") {
			id, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
			if err != nil {
				fmt.Fprintf(c.stderr, "invalid incident id %q\n", s)
				return exitUsage
			}
			ids = append(ids, id)
		}
		var n int64
		var audit *console.Store // opened for the first change
		for _, id := range ids {
			// Whose it is, for the audit row: the number alone is not
			// (retention deletes incidents; a later one can take the number).
			inc, err := svc.Store.Case(id)
			if errors.Is(err, reports.ErrNoIncident) {
				continue
			}
			if err != nil {
				fmt.Fprintln(c.stderr, err)
				return exitFailure
			}
			k, err := svc.Store.Acknowledge(id)
			if err != nil {
				fmt.Fprintln(c.stderr, err)
				return exitFailure
			}
			if k == 0 {
				continue
			}
			n += k
			// As the console audits a status change (after it).
			if audit == nil {
				audit = c.auditLog(svc.Store.DB())
			}
			if !c.auditCLI(audit, "incident.status", "incident:"+strconv.FormatInt(id, 10), `after="acknowledged"; record of `+inc.Who) {
				return exitFailure
			}
		}
		fmt.Fprintf(c.stdout, "%d incident(s) acknowledged\n", n)
		if n != int64(len(ids)) {
			fmt.Fprintf(c.stderr, "%d id(s) not found\n", int64(len(ids))-n)
			return exitFailure
		}
		return exitOK
	}
	flt, ok := c.exportFilter(&f, cfg)
	if !ok {
		return exitUsage
	}
	flt.Status = *status
	st := ""
	if *status != "" {
		st = "status " + *status
	}
	incs, err := svc.Store.Incidents(flt)
	if err != nil {
		fmt.Fprintln(c.stderr, err)
		return exitFailure
	}
	var people console.Shown
	for _, i := range incs {
		people.Add(reports.ShownIncident(i.ID, i.Who))
	}
	if !c.auditCLI(c.auditLog(svc.Store.DB()), lookAction(&f), lookTarget("incidents", &f), people.Detail(lookDetail("incidents", &f, st))) {
		return exitFailure
	}
	loc := cfg.Location()
	switch {
	case f.csv:
		err = reports.IncidentsCSV(c.stdout, incs, loc)
	case f.json:
		err = reports.IncidentsJSON(c.stdout, incs)
	default:
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATUS\tSEVERITY\tWHO\tGROUP\tCATEGORY\tFIRST\tLAST\tATTEMPTS\tEXAMPLES")
		for _, i := range incs {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", i.ID, i.Status, i.Severity, i.Who, i.Group, i.Category,
				i.First.In(loc).Format("01-02 15:04"), i.Last.In(loc).Format("01-02 15:04"), i.Count, reports.SafeCell(strings.Join(i.Samples, ", ")))
		}
		tw.Flush()
		if len(incs) == 0 {
			fmt.Fprintln(c.stderr, "no incidents in that period")
		}
	}
	if err != nil {
		fmt.Fprintln(c.stderr, err)
		return exitFailure
	}
	return exitOK
}

// eventPerson names an event's person as incidents do: user:NAME, else
// device:NAME, else ip:ADDR.
func eventPerson(e reports.StoredEvent) string {
	switch {
	case e.User != "":
		return "user:" + e.User
	case e.Device != "":
		return "device:" + e.Device
	}
	return "ip:" + e.Client
}

// eventWho names an event's client for a table: user or device, then the
// address.
func eventWho(e reports.StoredEvent) string {
	switch {
	case e.User != "":
		return e.User + " " + e.Client
	case e.Device != "":
		return e.Device + " " + e.Client
	}
	return e.Client
}

// mistakesTable lists "report a mistake" forms for a reader.
func (c *cli) mistakesTable(st *reports.Store, flt reports.Filter, loc *time.Location) error {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tCLIENT\tSITE\tREF\tWHY")
	n := 0
	err := st.Events(flt, func(e reports.StoredEvent) error {
		n++
		who := eventWho(e)
		site := e.URL
		if site == "" {
			site = e.Name
		}
		note := strings.Join(strings.Fields(e.Note), " ")
		_, werr := fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Time.In(loc).Format("2006-01-02 15:04:05"), who,
			reports.SafeCell(site), e.Ref, reports.SafeCell(note))
		return werr
	})
	tw.Flush()
	if err == nil && n == 0 {
		fmt.Fprintln(c.stderr, "no mistake reports in that period")
	}
	return err
}
