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
	if r.StaffToHeadteacher && route == bl.RouteDSL && slices.Contains(r.StaffGroups, group) {
		route = bl.RouteHeadteacher
	}
	return route, Roles(r.Recipients).resolve(string(route))
}
