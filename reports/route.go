package reports

import (
	"slices"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/config"
)

// ReportRoute is where a breach by a client of group, in a category whose
// configured route is route, is reported, as the writer and the mailer
// decide it: the route after the staff rule (breaches by staff_groups that
// would go to the DSL go to the headteacher; the restricted tier always
// to the DSL), and the role whose addresses receive it (a role with no
// address falls back to the DSL). Writer.classify applies the same rule;
// TestReportRouteMatchesWriter keeps the two in step.
func ReportRoute(cfg *config.Config, group string, route bl.Route, restricted bool) (bl.Route, string) {
	if route == "" || restricted && route == bl.RouteNone {
		route = bl.RouteDSL
	}
	if route == bl.RouteNone {
		return route, ""
	}
	r := cfg.Reports
	route = staffRule(route, group, r.StaffToHeadteacher, r.StaffGroups)
	return route, Roles(r.Recipients).resolve(string(route))
}

// staffRule sends to the headteacher a breach by one of the staff groups
// that would go to the DSL, when reports.staff_to_headteacher is on.
func staffRule(route bl.Route, group string, on bool, staff []string) bl.Route {
	if on && route == bl.RouteDSL && slices.Contains(staff, group) {
		return bl.RouteHeadteacher
	}
	return route
}
