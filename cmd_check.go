package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/policy"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// checkResult is the JSON form of `gatehouse check`.
type checkResult struct {
	Input      string    `json:"input"`
	Host       string    `json:"host"`
	Path       string    `json:"path,omitempty"`
	Client     string    `json:"client"`
	Device     string    `json:"device,omitempty"`
	User       string    `json:"user,omitempty"`
	Group      string    `json:"group"`
	Action     string    `json:"action"` // allow, block, rewrite, or refused (client outside clients.allow)
	Reason     string    `json:"reason"` // policy.Reason, or "acl" when refused
	Category   string    `json:"category"`
	Severity   string    `json:"severity"`
	Route      string    `json:"route"`               // where reports send a breach, after the staff rule
	ReportTo   string    `json:"report_to"`           // the role mailed (a role with no address falls back to dsl)
	Schedules  []string  `json:"schedules,omitempty"` // schedules that block it now (not the group's block:)
	List       string    `json:"list"`
	Entry      string    `json:"entry"`
	Bypass     bool      `json:"bypass"`
	Probe      bool      `json:"probe"`
	Restricted bool      `json:"restricted"`
	Rewrite    string    `json:"rewrite,omitempty"`
	Matched    []string  `json:"matched"`
	At         time.Time `json:"at"`
	// Search is the search term and its watchlist score, for a search
	// engine's URL (cmd_check_search.go).
	Search *checkSearch `json:"search,omitempty"`
}

func (c *cli) check(args []string) int {
	fs := c.flags("check")
	client := fs.String("client", "127.0.0.1", "client IP address")
	user := fs.String("user", "", "user name (as the proxy would know it)")
	at := fs.String("at", "", "time to decide at: RFC 3339 or \"YYYY-MM-DD HH:MM\" in the school's time zone (default now)")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return exitUsage
	}
	if len(pos) != 1 {
		fmt.Fprintln(c.stderr, "usage: gatehouse check [--client IP] [--user NAME] [--at TIME] [--json] NAME-OR-URL")
		return exitUsage
	}
	addr, err := netip.ParseAddr(*client)
	if err != nil {
		fmt.Fprintf(c.stderr, "gatehouse check: --client %q is not an IP address\n", *client)
		return exitUsage
	}
	host, path, err := splitTarget(pos[0])
	if err != nil {
		fmt.Fprintf(c.stderr, "gatehouse check: %q: %v\n", pos[0], err)
		return exitUsage
	}
	cfg, lists, code := c.configAndLists("check")
	if code != exitOK {
		return code
	}
	when := time.Now()
	if *at != "" {
		if when, err = parseAt(*at, cfg.Location()); err != nil {
			fmt.Fprintf(c.stderr, "gatehouse check: --at: %v\n", err)
			return exitUsage
		}
	}
	lists.NoFetch = true
	ix, err := lists.Load(context.Background())
	if err != nil {
		fmt.Fprintf(c.stderr, "gatehouse check: loading lists: %v\n", err)
		return exitFailure
	}
	eng, err := policy.New(cfg, ix)
	if err != nil {
		fmt.Fprintf(c.stderr, "gatehouse check: %v\n", err)
		return exitUsage
	}
	if !clientAllowed(cfg.Clients.Allow, addr) {
		return c.printRefused(checkResult{Input: pos[0], Host: host, Path: path, Client: addr.String(), Action: "refused",
			Reason: "acl", At: when.In(cfg.Location()), Matched: []string{}}, *asJSON)
	}
	// An IP-literal host is decided as an address too (IP lists), as the
	// proxy does.
	hostAddr, _ := netip.ParseAddr(host)
	d := eng.Decide(policy.Request{Client: addr, User: *user, Host: host, Path: path, Addr: hostAddr, Time: when})
	r := checkResult{
		Input: pos[0], Host: host, Path: path, Client: d.Client.String(), Device: d.Device, User: d.User, Group: d.Group,
		Action: d.Action.String(), Reason: d.Reason.String(), List: d.List, Entry: d.Entry, Bypass: d.Bypass, Probe: d.Probe,
		Restricted: d.Restricted, Rewrite: d.Rewrite, At: when.In(cfg.Location()), Matched: []string{},
	}
	if d.HasCategory {
		r.Category, r.Severity = d.Category.String(), d.Severity.String()
		route, role := reports.ReportRoute(cfg, d.Group, d.Route, d.Restricted)
		r.Route, r.ReportTo = string(route), role
		if d.Action == policy.Block && d.Reason == policy.ReasonCategory {
			r.Schedules = eng.BlockingSchedules(d.Group, d.Category, when)
		}
	}
	for _, m := range d.Matched.Slice() {
		if m.Restricted() && !d.Restricted {
			continue
		}
		r.Matched = append(r.Matched, m.String())
	}
	r.Search = searchOf(eng, d, host, pos[0])
	if *asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(r)
		return exitOK
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	who := r.Client
	if r.Device != "" {
		who += " (device " + r.Device + ")"
	}
	if r.User != "" {
		who += " user " + r.User
	}
	fmt.Fprintf(tw, "client\t%s\n", who)
	fmt.Fprintf(tw, "group\t%s\n", r.Group)
	fmt.Fprintf(tw, "site\t%s%s\n", r.Host, r.Path)
	fmt.Fprintf(tw, "action\t%s\n", strings.ToUpper(r.Action))
	why := explainReason(d)
	if len(r.Schedules) > 0 {
		why = fmt.Sprintf("group %s's schedule %s blocks this category now (not blocked outside it)", d.Group, quoteNames(r.Schedules))
	}
	fmt.Fprintf(tw, "why\t%s\n", why)
	if d.HasCategory {
		fmt.Fprintf(tw, "category\t%s (%s): severity %s, %s\n", r.Category, d.Category.Info().Title, r.Severity, reportedTo(r, d))
	}
	if r.List != "" {
		fmt.Fprintf(tw, "list\t%s\n", r.List)
	}
	if r.Entry != "" {
		fmt.Fprintf(tw, "entry\t%s\n", r.Entry)
	}
	if r.Rewrite != "" {
		fmt.Fprintf(tw, "rewrite\t%s\n", r.Rewrite)
	}
	if d.Bypass {
		fmt.Fprintf(tw, "bypass\tyes: an attempt to get around the filter\n")
	}
	if len(r.Matched) > 0 {
		fmt.Fprintf(tw, "listed in\t%s\n", strings.Join(r.Matched, ", "))
	}
	if r.Search != nil {
		r.Search.print(tw)
	}
	fmt.Fprintf(tw, "at\t%s\n", r.At.Format("Mon 2 Jan 2006 15:04 MST"))
	_ = tw.Flush()
	return exitOK
}

// clientAllowed is the front doors' ACL (clients.allow), IPv4-mapped
// addresses unmapped as they are.
func clientAllowed(allow []netip.Prefix, ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// printRefused prints the answer for a client outside clients.allow.
func (c *cli) printRefused(r checkResult, asJSON bool) int {
	if asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(r)
		return exitOK
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "client\t%s\n", r.Client)
	fmt.Fprintf(tw, "site\t%s%s\n", r.Host, r.Path)
	fmt.Fprintf(tw, "action\tREFUSED\n")
	fmt.Fprintf(tw, "why\tthe client is not in clients.allow: the DNS resolver answers REFUSED and the proxy refuses it; nothing is filtered or recorded\n")
	fmt.Fprintf(tw, "at\t%s\n", r.At.Format("Mon 2 Jan 2006 15:04 MST"))
	_ = tw.Flush()
	return exitOK
}

// reportedTo says where a breach goes, as the reports would send it.
func reportedTo(r checkResult, d policy.Decision) string {
	switch {
	case r.Route == string(bl.RouteNone):
		return "counted, never reported (route none)"
	case d.Action != policy.Block && !d.Bypass:
		return "reported to " + r.Route + " when blocked"
	}
	s := "reported to " + r.Route
	if r.Route == string(bl.RouteHeadteacher) && d.Route != bl.RouteHeadteacher {
		s += " (a breach by the staff group " + d.Group + ": allegations-against-staff practice)"
	}
	if r.ReportTo != r.Route {
		s += "; " + r.Route + " has no address in reports.recipients, so the mail goes to " + r.ReportTo
	}
	return s
}

func quoteNames(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		if n == "" {
			n = "(unnamed)"
		}
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, " and ")
}

func explainReason(d policy.Decision) string {
	switch d.Reason {
	case policy.ReasonRestricted:
		return "on a restricted list (illegal content); always blocked for everyone"
	case policy.ReasonGroupDeny:
		return "on the deny list of group " + d.Group
	case policy.ReasonGroupAllow:
		return "on the allow list of group " + d.Group
	case policy.ReasonCategory:
		return "group " + d.Group + " blocks this category"
	case policy.ReasonAlways:
		return "automatic probe answered so devices keep using the school's filter"
	case policy.ReasonSafeSearch:
		return "group " + d.Group + " enforces safe search"
	}
	return "not on any list that group " + d.Group + " blocks"
}

// splitTarget reads a name or URL into a normalised host (an IP address in
// any spelling a browser accepts comes back in its usual form) and its
// path in the canonical form URL lists are matched in.
func splitTarget(s string) (host, path string, err error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "://") || strings.Contains(s, "/") {
		hp, err := bl.NormalizeURL(s)
		if err != nil {
			return "", "", err
		}
		// NormalizeURL drops "www."; decide on the host as typed.
		h, err := bl.NormalizeHost(s)
		if err != nil {
			return "", "", err
		}
		if i := strings.IndexByte(hp, '/'); i >= 0 {
			path = hp[i:]
		}
		return h, path, nil
	}
	host, err = bl.NormalizeHost(s)
	return host, "", err
}

// parseAt reads --at: RFC 3339 ("2026-12-04T10:00:00Z", "...+01:00", with
// fractional seconds, lower-case t and z, or a space for the T, as RFC 3339
// allows), or a local time in the school's zone: "YYYY-MM-DD HH:MM",
// with optional seconds and a T in place of the space.
func parseAt(s string, loc *time.Location) (time.Time, error) {
	s = strings.TrimSpace(s)
	norm := s
	if len(norm) > 10 && (norm[10] == ' ' || norm[10] == 't') {
		norm = norm[:10] + "T" + norm[11:]
	}
	norm = strings.Replace(norm, "z", "Z", 1)
	if t, err := time.Parse(time.RFC3339Nano, norm); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05"} {
		if t, err := time.ParseInLocation(layout, norm, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not RFC 3339 (2026-12-04T10:00:00Z) or a local \"YYYY-MM-DD HH:MM\"", s)
}
