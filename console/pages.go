package console

import (
	"encoding/csv"
	"net/http"
	"strconv"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// severityRow is one line of the home page's counts.
type severityRow struct {
	Severity          string
	Today, Week, Open int
	Incidents         []reports.Incident // today's, for the DSL
}

// periods returns the start of today and of this week (Monday) in the
// school's time zone.
func (s *Server) periods() (today, week time.Time) {
	now := s.o.Now().In(s.o.Location)
	today = time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, s.o.Location)
	back := (int(today.Weekday()) + 6) % 7 // days since Monday
	week = today.AddDate(0, 0, -back)
	return today, week
}

// bySeverity counts this week's incidents that keep accepts (nil: all)
// per severity, most severe first; withToday keeps today's incidents
// themselves.
func (s *Server) bySeverity(keep func(reports.Incident) bool, withToday bool) ([]severityRow, error) {
	today, week := s.periods()
	var list []reports.Incident
	if s.o.Incidents != nil {
		var err error
		if list, err = s.o.Incidents.Incidents(reports.Filter{Since: week}); err != nil {
			return nil, err
		}
	}
	rows := make([]severityRow, bl.SeverityCritical+1)
	for i := range rows {
		rows[i].Severity = bl.Severity(len(rows) - 1 - i).String()
	}
	for _, in := range list {
		if in.Severity > bl.SeverityCritical || (keep != nil && !keep(in)) {
			continue
		}
		r := &rows[int(bl.SeverityCritical)-int(in.Severity)]
		r.Week++
		if !in.Last.Before(today) {
			r.Today++
			if withToday {
				r.Incidents = append(r.Incidents, in)
			}
		}
		if in.Status != reports.StatusAcknowledged {
			r.Open++
		}
	}
	return rows, nil
}

func (s *Server) home(w http.ResponseWriter, r *http.Request) {
	sess := s.signedIn(w, r)
	if sess == nil {
		return
	}
	a := sess.account
	data := map[string]any{"Account": a.Email, "Role": roleName(a.Role), "CSRF": sess.csrf, "Auditor": a.Role == RoleAuditor || a.Role == RoleDSL,
		"Incidents": a.Role != RoleIT}
	today, week := s.periods()
	data["Today"], data["Week"] = today, week
	switch a.Role {
	case RoleDSL, RoleHeadteacher:
		// The DSL sees everyone's incidents; the headteacher those routed
		// to them (staff, reports.staff_to_headteacher).
		var keep func(reports.Incident) bool
		target, heading := "incidents:today", "Incidents"
		if a.Role == RoleHeadteacher {
			keep = func(in reports.Incident) bool { return in.Route == string(bl.RouteHeadteacher) }
			target, heading = "incidents:today:staff", "Staff incidents"
		}
		rows, err := s.bySeverity(keep, true)
		if err != nil {
			s.fail(w, err)
			return
		}
		route := ""
		if keep != nil {
			route = staffRoute
		}
		att, err := s.caseHome(data, route) // dslhome.go
		if err != nil {
			s.fail(w, err)
			return
		}
		// Today's incidents name people: the look is audited first, with
		// whose records the page shows.
		var shown Shown
		for i := range att {
			shown.Add(reports.ShownIncident(att[i].ID, att[i].Who))
		}
		for _, row := range rows {
			for _, in := range row.Incidents {
				shown.Add(reports.ShownIncident(in.ID, in.Who))
			}
		}
		if err := s.RecordView(r, a, target, shown.Detail("home page: today's incidents by severity")); err != nil {
			s.fail(w, err)
			return
		}
		data["Rows"], data["Heading"] = rows, heading
		s.render(w, http.StatusOK, "home_dsl", data)
	case RoleIT:
		rows, err := s.bySeverity(nil, false)
		if err != nil {
			s.fail(w, err)
			return
		}
		data["Rows"] = rows
		s.itHome(data) // it.go: the IT pages' links and the mis-block queue's count
		s.render(w, http.StatusOK, "home_counts", data)
	default:
		s.render(w, http.StatusOK, "home_other", data)
	}
}

// auditReader returns the signed-in account when it may read the audit
// log (auditors and the DSL), answering for it otherwise.
func (s *Server) auditReader(w http.ResponseWriter, r *http.Request) (*session, bool) {
	sess := s.signedIn(w, r)
	if sess == nil {
		return nil, false
	}
	if a := sess.account; a.Role != RoleAuditor && a.Role != RoleDSL {
		s.message(w, http.StatusForbidden, "Not for this account", "The audit log is for auditors and the DSL.")
		return nil, false
	}
	return sess, true
}

// auditCSV exports the audit log (RFC 4180, spreadsheet-safe cells); the
// export is itself audited first.
func (s *Server) auditCSV(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.auditReader(w, r)
	if !ok {
		return
	}
	if err := s.o.Store.Audit(Entry{Time: s.o.Now(), Actor: sess.account.Email, Addr: clientAddr(r).String(), Action: "export", Target: "audit", Detail: "audit log CSV"}); err != nil {
		s.fail(w, err)
		return
	}
	log, err := s.o.Store.AuditLog()
	if err != nil {
		s.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="gatehouse-audit.csv"`)
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"id", "time", "actor", "address", "action", "target", "detail", "hash"})
	for _, e := range log {
		_ = cw.Write([]string{strconv.FormatInt(e.ID, 10), e.Time.In(s.o.Location).Format(time.RFC3339), reports.SafeCell(e.Actor), e.Addr,
			e.Action, reports.SafeCell(e.Target), reports.SafeCell(e.Detail), e.Hash})
	}
	cw.Flush()
}

// audit shows the audit log, newest first, to auditors and the DSL.
func (s *Server) audit(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.auditReader(w, r)
	if !ok {
		return
	}
	a := sess.account
	log, err := s.o.Store.AuditLog()
	if err != nil {
		s.fail(w, err)
		return
	}
	if err := s.RecordView(r, a, "audit", "audit log"); err != nil {
		s.fail(w, err)
		return
	}
	for i, j := 0, len(log)-1; i < j; i, j = i+1, j-1 {
		log[i], log[j] = log[j], log[i]
	}
	bad, err := s.o.Store.VerifyAudit()
	if err != nil {
		s.fail(w, err)
		return
	}
	s.render(w, http.StatusOK, "audit", map[string]any{"Account": a.Email, "Role": roleName(a.Role), "CSRF": sess.csrf,
		"Auditor": true, "Log": log, "Broken": bad})
}
