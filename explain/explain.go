// Package explain answers "why was this blocked": for a client (or a
// user) and a name or URL it runs the policy engine's decision and says,
// in plain words, which rule decided and where a breach would be
// reported. `gatehouse check` prints it and the console's "why blocked"
// page shows it; both call Run, so they cannot disagree.
package explain

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/policy"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// Input is one question.
type Input struct {
	Target string     // a name or URL, as typed
	Client netip.Addr // the client's address
	User   string     // the user, as the proxy would know them ("" for none)
	At     time.Time  // when to decide (zero: now)
}

// Result is the answer; its JSON form is `gatehouse check --json`.
type Result struct {
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
	Proxied    string    `json:"proxied,omitempty"` // the site a web proxy's name stands for, when that decided
	Matched    []string  `json:"matched"`
	At         time.Time `json:"at"`

	// Lines is the answer in words, label and text, in the order
	// `gatehouse check` prints them.
	Lines []Line `json:"-"`
}

// Line is one labelled line of the answer.
type Line struct {
	Label, Text string
}

// Run decides in.Target for in.Client with eng, built from cfg, as the
// front doors would. A target that is not a name or URL is an error.
func Run(cfg *config.Config, eng *policy.Engine, in Input) (Result, error) {
	host, path, err := SplitTarget(in.Target)
	if err != nil {
		return Result{}, fmt.Errorf("%q: %w", in.Target, err)
	}
	when := in.At
	if when.IsZero() {
		when = time.Now()
	}
	addr := in.Client.Unmap()
	// An IP-literal host is decided as an address too (IP lists), as the
	// proxy does.
	hostAddr, _ := netip.ParseAddr(host)
	if !ClientAllowed(cfg.Clients.Allow, addr) {
		r := Result{Input: in.Target, Host: host, Path: path, Client: addr.String(), Action: "refused",
			Reason: "acl", At: when.In(cfg.Location()), Matched: []string{}}
		// Nothing is filtered for this client, but whoever shows or records
		// the answer must know a site on the restricted tier (the console
		// keeps only its hash): that tier is the same for every client.
		if d := eng.Decide(policy.Request{Client: addr, Host: host, Path: path, Addr: hostAddr, Time: when}); d.Restricted {
			r.Restricted = true
			if d.HasCategory {
				r.Category = d.Category.String()
			}
		}
		r.Lines = []Line{{"client", r.Client}, {"site", r.Host + r.Path}, {"action", "REFUSED"},
			{"why", "the client is not in clients.allow: the DNS resolver answers REFUSED and the proxy refuses it; nothing is filtered or recorded"},
			{"at", r.At.Format("Mon 2 Jan 2006 15:04 MST")}}
		return r, nil
	}
	d := eng.Decide(policy.Request{Client: addr, User: in.User, Host: host, Path: path, Addr: hostAddr, Time: when})
	// A search for a restricted-tier site's address is that site's block,
	// as the proxy decides it (policy.Engine.RestrictedTerm).
	if se, ok := eng.SearchEngines().Lookup(host); ok && d.Action != policy.Block && path != "" {
		p, q, _ := strings.Cut(path, "?")
		if term, ok := se.Term(p, q); ok {
			if td, ok := eng.RestrictedTerm(policy.Request{Client: addr, User: in.User, Time: when}, term); ok {
				td.Identity = d.Identity
				d = td
			}
		}
	}
	r := Result{
		Input: in.Target, Host: host, Path: path, Client: d.Client.String(), Device: d.Device, User: d.User, Group: d.Group,
		Action: d.Action.String(), Reason: d.Reason.String(), List: d.List, Entry: d.Entry, Bypass: d.Bypass, Probe: d.Probe,
		Restricted: d.Restricted, Rewrite: d.Rewrite, Proxied: d.Proxied, At: when.In(cfg.Location()), Matched: []string{},
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
	r.Lines = lines(&r, d)
	return r, nil
}

// lines says r in words.
func lines(r *Result, d policy.Decision) []Line {
	who := r.Client
	if r.Device != "" {
		who += " (device " + r.Device + ")"
	}
	if r.User != "" {
		who += " user " + r.User
	}
	out := []Line{{"client", who}, {"group", r.Group}, {"site", r.Host + r.Path}, {"action", strings.ToUpper(r.Action)}}
	why := Reason(d)
	if len(r.Schedules) > 0 {
		why = fmt.Sprintf("group %s's schedule %s blocks this category now (not blocked outside it)", d.Group, quoteNames(r.Schedules))
	}
	out = append(out, Line{"why", why})
	if d.HasCategory {
		out = append(out, Line{"category", fmt.Sprintf("%s (%s): severity %s, %s", r.Category, d.Category.Info().Title, r.Severity, reportedTo(r, d))})
	}
	if r.List != "" {
		out = append(out, Line{"list", r.List})
	}
	if r.Entry != "" {
		out = append(out, Line{"entry", r.Entry})
	}
	if r.Rewrite != "" {
		out = append(out, Line{"rewrite", r.Rewrite})
	}
	if r.Proxied != "" {
		out = append(out, Line{"through", r.Host + " serves " + r.Proxied + " here (a web proxy or archive): decided as that site"})
	}
	if d.Bypass {
		out = append(out, Line{"bypass", "yes: an attempt to get around the filter"})
	}
	if len(r.Matched) > 0 {
		out = append(out, Line{"listed in", strings.Join(r.Matched, ", ")})
	}
	return append(out, Line{"at", r.At.Format("Mon 2 Jan 2006 15:04 MST")})
}

// ClientAllowed is the front doors' ACL (clients.allow), IPv4-mapped
// addresses unmapped as they are.
func ClientAllowed(allow []netip.Prefix, ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// reportedTo says where a breach goes, as the reports would send it.
func reportedTo(r *Result, d policy.Decision) string {
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

// Reason says in words which step of the decision order decided d.
func Reason(d policy.Decision) string {
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
		if d.List != "" {
			return "group " + d.Group + " enforces safe search; its allow list lifts blocks, not safe search (safe_search: off turns it off)"
		}
		return "group " + d.Group + " enforces safe search"
	}
	return "not on any list that group " + d.Group + " blocks"
}

// SplitTarget reads a name or URL into a normalised host (an IP address in
// any spelling a browser accepts comes back in its usual form) and its
// path in the canonical form URL lists are matched in.
func SplitTarget(s string) (host, path string, err error) {
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

// ParseAt reads a time to decide at: RFC 3339 ("2026-12-04T10:00:00Z",
// "...+01:00", with fractional seconds, lower-case t and z, or a space for
// the T, as RFC 3339 allows), or a local time in the school's zone:
// "YYYY-MM-DD HH:MM", with optional seconds and a T in place of the space.
func ParseAt(s string, loc *time.Location) (time.Time, error) {
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
