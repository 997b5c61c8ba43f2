package console

import (
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// Cases is what the incident pages read and change: incidents, their
// case records (assignee, notes, status and outcome, each with author and
// time), their attempts, the alerts sent and a person's history.
// reports.Store implements it on SQLite with plain SQL; a PostgreSQL
// backend implements the same methods over the same schema.
type Cases interface {
	// IncidentPage returns a page of incidents, newest first, and the
	// number q selects in all.
	IncidentPage(q reports.IncidentQuery) ([]reports.Case, int, error)
	// Attention returns open incidents at or above sev (route "" for all),
	// most severe and newest first.
	Attention(sev bl.Severity, route string, limit int) ([]reports.Case, error)
	// Case returns an incident (reports.ErrNoIncident when there is none).
	Case(id int64) (reports.Case, error)
	CaseLog(id int64) ([]reports.CaseEntry, error)
	IncidentEvents(id int64, limit int) ([]reports.StoredEvent, error)
	// WhoEvents returns the blocked attempts of "user:NAME",
	// "device:NAME" or "ip:ADDR" in [since, until).
	WhoEvents(who string, since, until time.Time, limit int) ([]reports.StoredEvent, error)
	// AroundEvents returns everything recorded for an address or user in
	// [since, until) (every query when full logging is on).
	AroundEvents(client, user string, since, until time.Time, limit int) ([]reports.StoredEvent, error)
	Alerts(id int64) ([]reports.SentAlert, error)
	Themes(since, until time.Time, route string, loc *time.Location) ([]reports.DayCount, error)
	Mail() (reports.MailStatus, error)

	// Changes return what was there before, for the audit log.
	Assign(id int64, author, to string, now time.Time) (before string, err error)
	AddNote(id int64, author, text string, now time.Time) error
	// SetStateSeen opens or closes; closing is refused with
	// reports.ErrNewAttempts when the incident has more attempts than
	// seen, the count on the page the DSL closed it from.
	SetStateSeen(id int64, author, state, outcome string, seen int64, now time.Time) (before, after string, err error)
}

var _ Cases = (*reports.Store)(nil)

// Who may do what with incidents.
//
//	dsl          every incident: list, open, act, history, export
//	headteacher  staff incidents (routed to the headteacher) only; acts on them
//	auditor      every incident, read only
//	it           counts on the home page only: opening one is refused and audited

// staffRoute is the route of incidents about staff.
const staffRoute = string(bl.RouteHeadteacher)

// routeFor is the route an account is limited to ("" for all) and
// whether it may see incidents at all.
func routeFor(role string) (route string, ok bool) {
	switch role {
	case RoleDSL, RoleAuditor:
		return "", true
	case RoleHeadteacher:
		return staffRoute, true
	}
	return "", false
}

// maySee reports whether a may open incident c.
func maySee(a Account, c *reports.Case) bool {
	route, ok := routeFor(a.Role)
	return ok && (route == "" || c.Route == route)
}

// mayAct reports whether a may assign, note and close incident c.
func mayAct(a Account, c *reports.Case) bool {
	return (a.Role == RoleDSL || a.Role == RoleHeadteacher) && maySee(a, c)
}
