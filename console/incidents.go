package console

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// The DSL's incident pages: the list, one incident with its case record
// and actions, a person's or device's history, and the evidence export.
// Every page that names a person is audited before it is sent; an
// account that may not open a page is refused (403) and the attempt is
// audited too.

// Bounds on what one page shows.
const (
	pageSize      = 50   // incidents per list page
	maxTimeline   = 500  // an incident's attempts shown (the export has them all up to maxExport)
	maxAround     = 500  // events in the ±1 hour around an incident
	maxHistory    = 1000 // events in a history page
	maxExport     = 100_000
	maxHistoryDay = 366 // longest history range, days
	aroundWindow  = time.Hour
)

// incidentPages are the templates of this file.
var incidentPages = []string{"incidents", "incident", "history", "evidence"}

// incidentRoutes adds the incident pages to mux.
func (s *Server) incidentRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /incidents", s.incidentList)
	mux.HandleFunc("GET /incidents/{id}", s.incidentPage)
	mux.HandleFunc("POST /incidents/{id}/assign", s.incidentAssign)
	mux.HandleFunc("POST /incidents/{id}/note", s.incidentNote)
	mux.HandleFunc("POST /incidents/{id}/state", s.incidentState)
	mux.HandleFunc("GET /incidents/{id}/evidence", s.evidenceHTML)
	mux.HandleFunc("GET /incidents/{id}/evidence.csv", s.evidenceCSV)
	mux.HandleFunc("GET /history", s.history)
}

// incidentFuncs are the template functions the incident pages add.
func (s *Server) incidentFuncs() template.FuncMap {
	return template.FuncMap{
		"sev":            func(v bl.Severity) string { return v.String() },
		"day":            func(t time.Time) string { return t.In(s.o.Location).Format("2006-01-02") },
		"clock":          func(t time.Time) string { return t.In(s.o.Location).Format("15:04:05") },
		"full":           func(t time.Time) string { return t.In(s.o.Location).Format("Mon 2 Jan 2006 15:04:05") },
		"ref":            func(id int64) string { return fmt.Sprintf("#%d", id) },
		"restrictedList": restrictedList,
	}
}

// base is the layout's data for a signed-in account.
func base(sess *session) map[string]any {
	a := sess.account
	return map[string]any{"Account": a.Email, "Role": roleName(a.Role), "CSRF": sess.csrf,
		"Auditor": a.Role == RoleAuditor || a.Role == RoleDSL, "Incidents": a.Role != RoleIT}
}

// record writes an audit entry for the signed-in account.
func (s *Server) record(r *http.Request, sess *session, action, target, detail string) error {
	return s.o.Store.Audit(Entry{Time: s.o.Now(), Actor: sess.account.Email, Addr: clientAddr(r).String(), Action: action, Target: target, Detail: detail})
}

// refuse answers 403 after auditing the attempt (a page is not refused
// unaudited: if the audit fails the answer is still 403). whose is the
// person the refused page is about ("" when none), for the audit row
// only: the answer never names them.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, sess *session, target, whose, why string) {
	detail := why
	if whose != "" {
		detail += " (" + recordOf(whose) + ")"
	}
	if err := s.record(r, sess, "denied", target, detail); err != nil {
		s.o.Log.Error("console: auditing a refused request", "err", err)
	}
	s.message(w, http.StatusForbidden, "Not for this account", why)
}

// Shown is whose records a page or a command's output shows, each once,
// for its audit row: every look at a person's record names them, on a
// list too (an auditor asked who has seen a pupil's record finds every
// page and export that showed it, not only the incident's own).
type Shown struct {
	seen  map[string]bool
	parts []string
}

// Add names one record shown: "user:alice", or an incident as
// reports.ShownIncident words it.
func (l *Shown) Add(who string) {
	if l.seen[who] {
		return
	}
	if l.seen == nil {
		l.seen = map[string]bool{}
	}
	l.seen[who] = true
	l.parts = append(l.parts, who)
}

// Detail is what followed by the records shown ("...: shown #12
// user:alice, #13 device:lab-pc-3"), or that nobody's were.
func (l *Shown) Detail(what string) string {
	if len(l.parts) == 0 {
		return what + ": nobody shown"
	}
	return what + ": shown " + strings.Join(l.parts, ", ")
}

// incidentTarget is how the audit log names an incident. Its number is
// not whose it is: retention deletes incidents and a later one can take
// a deleted number, so every row about an incident also says whose
// record it is (recordOf).
func incidentTarget(id int64) string { return "incident:" + strconv.FormatInt(id, 10) }

// recordOf is how an audit row says whose record it is about.
func recordOf(who string) string { return "record of " + who }

// casesSession returns the signed-in account when it may see incidents at
// all, answering for it otherwise.
func (s *Server) casesSession(w http.ResponseWriter, r *http.Request, target string) *session {
	sess := s.signedIn(w, r)
	if sess == nil {
		return nil
	}
	if s.o.Cases == nil {
		s.message(w, http.StatusNotFound, "No incidents here", "This console has no incident store.")
		return nil
	}
	if _, ok := routeFor(sess.account.Role); !ok {
		s.refuseCounts(w, r, sess, target, "")
		return nil
	}
	return sess
}

// refuseCounts refuses an account that sees counts only (IT).
func (s *Server) refuseCounts(w http.ResponseWriter, r *http.Request, sess *session, target, whose string) {
	s.refuse(w, r, sess, target, whose, "Incident details are for the safeguarding team (DSL, headteacher for staff, auditors). This account sees counts only.")
}

// listQuery reads the list's filters from the URL.
type listQuery struct {
	Period, Severity, State string
	Bypass                  bool
	Page                    int
}

func (s *Server) parseList(v url.Values) (listQuery, reports.IncidentQuery) {
	lq := listQuery{Period: v.Get("period"), Severity: v.Get("severity"), State: v.Get("state"), Bypass: v.Get("bypass") == "1"}
	today, week := s.periods()
	q := reports.IncidentQuery{AnySeverity: true, Limit: pageSize, Bypass: lq.Bypass}
	switch lq.Period {
	case "today":
		q.Since = today
	case "30d":
		q.Since = today.AddDate(0, 0, -30)
	case "all":
	default:
		lq.Period, q.Since = "week", week
	}
	if sv, err := bl.ParseSeverity(lq.Severity); err == nil && lq.Severity != "" {
		q.Severity, q.AnySeverity = sv, false
	} else {
		lq.Severity = ""
	}
	switch lq.State {
	case reports.CaseOpen, reports.CaseClosed:
		q.State = lq.State
	default:
		lq.State = ""
	}
	lq.Page, _ = strconv.Atoi(v.Get("page"))
	lq.Page = min(max(lq.Page, 1), 100_000)
	q.Offset = (lq.Page - 1) * pageSize
	return lq, q
}

// href is the list's URL with its filters and another page.
func (lq listQuery) href(page int) string {
	v := url.Values{"period": {lq.Period}}
	if lq.Severity != "" {
		v.Set("severity", lq.Severity)
	}
	if lq.State != "" {
		v.Set("state", lq.State)
	}
	if lq.Bypass {
		v.Set("bypass", "1")
	}
	if page > 1 {
		v.Set("page", strconv.Itoa(page))
	}
	return "/incidents?" + v.Encode()
}

func (s *Server) incidentList(w http.ResponseWriter, r *http.Request) {
	sess := s.casesSession(w, r, "incidents")
	if sess == nil {
		return
	}
	lq, q := s.parseList(r.URL.Query())
	q.Route, _ = routeFor(sess.account.Role)
	list, total, err := s.o.Cases.IncidentPage(q)
	if err != nil {
		s.fail(w, err)
		return
	}
	var shown Shown
	for i := range list {
		shown.Add(reports.ShownIncident(list[i].ID, list[i].Who))
	}
	if err := s.record(r, sess, "view", "incidents", shown.Detail("incident list "+strings.TrimPrefix(lq.href(lq.Page), "/incidents?"))); err != nil {
		s.fail(w, err)
		return
	}
	data := base(sess)
	pages := max((total+pageSize-1)/pageSize, 1)
	data["List"], data["Total"], data["Q"], data["Page"], data["Pages"] = list, total, lq, lq.Page, pages
	if lq.Page > 1 {
		data["Prev"] = lq.href(lq.Page - 1)
	}
	if lq.Page < pages {
		data["Next"] = lq.href(lq.Page + 1)
	}
	data["Severities"] = []string{"critical", "high", "medium", "low", "info"}
	data["Staff"] = sess.account.Role == RoleHeadteacher
	s.render(w, http.StatusOK, "incidents", data)
}

// loadCase reads the incident in the path for an account that may see
// it, answering (404, or 403 audited) otherwise.
func (s *Server) loadCase(w http.ResponseWriter, r *http.Request) (*session, *reports.Case) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	target := incidentTarget(id)
	if err != nil || id <= 0 {
		target = "incident:?"
	}
	sess := s.signedIn(w, r)
	if sess == nil {
		return nil, nil
	}
	if s.o.Cases == nil {
		s.message(w, http.StatusNotFound, "No incidents here", "This console has no incident store.")
		return nil, nil
	}
	// The incident is read before the account's rights are checked, so a
	// refusal's audit row says whose it is (the answer does not).
	var c reports.Case
	cerr := reports.ErrNoIncident
	if err == nil && id > 0 {
		c, cerr = s.o.Cases.Case(id)
	}
	if cerr != nil && !errors.Is(cerr, reports.ErrNoIncident) {
		s.fail(w, cerr)
		return nil, nil
	}
	if _, ok := routeFor(sess.account.Role); !ok {
		s.refuseCounts(w, r, sess, target, c.Who) // alike whether it exists or not
		return nil, nil
	}
	if cerr != nil {
		msg := "There is no incident with that reference."
		if err == nil && id > 0 {
			msg = fmt.Sprintf("There is no incident #%d. It may have been removed by the retention policy.", id)
		}
		s.message(w, http.StatusNotFound, "No such incident", msg)
		return nil, nil
	}
	if !maySee(sess.account, &c) {
		s.refuse(w, r, sess, target, c.Who, "This incident is not about a member of staff: it is for the DSL.")
		return nil, nil
	}
	return sess, &c
}

// timeline is an incident's attempts with the sites, URLs and search
// terms among them (restricted-tier entries only as the list's title).
type timeline struct {
	Events                []reports.StoredEvent
	Sites, URLs, Searches []string
	More                  bool
}

func makeTimeline(evs []reports.StoredEvent, limit int) timeline {
	t := timeline{Events: evs}
	if len(evs) > limit {
		t.Events, t.More = evs[:limit], true
	}
	add := func(list *[]string, v string) {
		if v != "" && len(*list) < 100 && !slices.Contains(*list, v) {
			*list = append(*list, v)
		}
	}
	for _, e := range t.Events {
		add(&t.Sites, e.Name)
		add(&t.URLs, e.URL)
		add(&t.Searches, e.SearchTerm)
	}
	return t
}

func (s *Server) incidentPage(w http.ResponseWriter, r *http.Request) {
	sess, c := s.loadCase(w, r)
	if sess == nil {
		return
	}
	evs, err := s.o.Cases.IncidentEvents(c.ID, maxTimeline+1)
	if err != nil {
		s.fail(w, err)
		return
	}
	log, alerts, err := s.caseRecord(c.ID)
	if err != nil {
		s.fail(w, err)
		return
	}
	data := base(sess)
	full := s.o.FullLog != nil && s.o.FullLog()
	var others []string // other people the browsing around shows
	if full {
		around, err := s.o.Cases.AroundEvents(c.Client, c.User, c.First.Add(-aroundWindow), c.Last.Add(aroundWindow), maxAround+1)
		if err != nil {
			s.fail(w, err)
			return
		}
		if route, _ := routeFor(sess.account.Role); route != "" {
			// The headteacher sees staff incidents only: around one, the
			// member of staff's own browsing, never a pupil's from the
			// same address (a shared PC, an address handed on).
			around = slices.DeleteFunc(around, func(e reports.StoredEvent) bool { return !sameSubject(c, &e) })
		}
		t := makeTimeline(around, maxAround)
		others = otherPeople(c, t.Events)
		data["Around"] = t
	}
	var assignees []string
	if mayAct(sess.account, c) {
		accts, err := s.o.Store.Accounts()
		if err != nil {
			s.fail(w, err)
			return
		}
		for _, a := range accts {
			if !a.Disabled && (a.Role == RoleDSL || (a.Role == RoleHeadteacher && c.Route == staffRoute)) {
				assignees = append(assignees, a.Email)
			}
		}
	}
	// The look is audited before anything is sent.
	detail := "incident page: " + recordOf(c.Who)
	if len(others) > 0 {
		detail += "; the browsing around it shows also " + strings.Join(others, ", ")
	}
	if err := s.record(r, sess, "view", incidentTarget(c.ID), detail); err != nil {
		s.fail(w, err)
		return
	}
	data["C"], data["T"], data["Log"], data["Alerts"], data["FullLog"] = c, makeTimeline(evs, maxTimeline), log, alerts, full
	data["Act"], data["Assignees"], data["Outcomes"] = mayAct(sess.account, c), assignees, reports.Outcomes
	data["Histories"] = histories(c)
	s.render(w, http.StatusOK, "incident", data)
}

// sameSubject reports whether e is the incident's own person's: the
// same user, or, for an incident known only by its device or address,
// an event naming no user in the incident's group.
func sameSubject(c *reports.Case, e *reports.StoredEvent) bool {
	if c.User != "" {
		return e.User == c.User
	}
	return e.User == "" && e.Group == c.Group
}

// otherPeople names the people other than the incident's own whose
// events evs holds ("user:bob"), each once, in order: the address's
// browsing around an incident is everyone's at that address (a shared
// PC), so the look at it is a look at their records too.
func otherPeople(c *reports.Case, evs []reports.StoredEvent) []string {
	var out []string
	for _, e := range evs {
		if e.User != "" && e.User != c.User && !slices.Contains(out, "user:"+e.User) {
			out = append(out, "user:"+e.User)
		}
	}
	return out
}

// histLink is a link to a person's, device's or address's history.
type histLink struct{ Label, Href string }

func histories(c *reports.Case) []histLink {
	var out []histLink
	add := func(label, who string) {
		out = append(out, histLink{label, "/history?" + url.Values{"who": {who}}.Encode()})
	}
	if c.User != "" {
		add("History of "+c.User, "user:"+c.User)
	}
	if c.Device != "" {
		add("History of device "+c.Device, "device:"+c.Device)
	}
	if c.Client != "" {
		add("History of address "+c.Client, "ip:"+c.Client)
	}
	return out
}

// actSession checks a change's session, form token and rights.
func (s *Server) actSession(w http.ResponseWriter, r *http.Request) (*session, *reports.Case) {
	sess, c := s.loadCase(w, r)
	if sess == nil {
		return nil, nil
	}
	if !checkCSRF(r, sess) {
		s.message(w, http.StatusForbidden, "Request refused", "The form had expired. Open the incident again and retry.")
		return nil, nil
	}
	if !mayAct(sess.account, c) {
		s.refuse(w, r, sess, incidentTarget(c.ID), c.Who, "This account may read incidents but not change them.")
		return nil, nil
	}
	return sess, c
}

// changed audits a change (saying whose record it is) and goes back to
// the incident.
func (s *Server) changed(w http.ResponseWriter, r *http.Request, sess *session, c *reports.Case, action, detail string) {
	if err := s.record(r, sess, action, incidentTarget(c.ID), detail+"; "+recordOf(c.Who)); err != nil {
		s.fail(w, err)
		return
	}
	http.Redirect(w, r, fmt.Sprintf("/incidents/%d", c.ID), http.StatusSeeOther)
}

func (s *Server) incidentAssign(w http.ResponseWriter, r *http.Request) {
	sess, c := s.actSession(w, r)
	if sess == nil {
		return
	}
	to := NormalEmail(r.PostFormValue("assignee"))
	if to != "" {
		a, err := s.o.Store.Account(to)
		if err != nil || a.Disabled || !(a.Role == RoleDSL || (a.Role == RoleHeadteacher && c.Route == staffRoute)) {
			s.message(w, http.StatusBadRequest, "Not assigned", "An incident can be assigned to an active DSL account (or the headteacher, for staff).")
			return
		}
	}
	before, err := s.o.Cases.Assign(c.ID, sess.account.Email, to, s.o.Now())
	if err != nil {
		s.fail(w, err)
		return
	}
	s.changed(w, r, sess, c, "incident.assign", fmt.Sprintf("before=%q after=%q", before, to))
}

func (s *Server) incidentNote(w http.ResponseWriter, r *http.Request) {
	sess, c := s.actSession(w, r)
	if sess == nil {
		return
	}
	note := strings.TrimSpace(r.PostFormValue("note"))
	if note == "" || len(note) > reports.MaxNote {
		s.message(w, http.StatusBadRequest, "Note not added", fmt.Sprintf("A case note needs some text, at most %d characters.", reports.MaxNote))
		return
	}
	if err := s.o.Cases.AddNote(c.ID, sess.account.Email, note, s.o.Now()); err != nil {
		s.fail(w, err)
		return
	}
	// The audit log is kept for good; the note goes with the case record
	// when reports.retention purges it. So the audit keeps its size and
	// hash (enough to show that a note read later is the one written),
	// never its text.
	sum := sha256.Sum256([]byte(note))
	s.changed(w, r, sess, c, "incident.note", fmt.Sprintf("note added: %d characters, sha256:%x", utf8.RuneCountInString(note), sum))
}

func (s *Server) incidentState(w http.ResponseWriter, r *http.Request) {
	sess, c := s.actSession(w, r)
	if sess == nil {
		return
	}
	state, outcome := r.PostFormValue("state"), r.PostFormValue("outcome")
	if state == reports.CaseClosed && !reports.ValidOutcome(outcome) {
		s.message(w, http.StatusBadRequest, "Not closed", "Choose the outcome before closing: "+strings.Join(reports.Outcomes, "; ")+".")
		return
	}
	if state != reports.CaseClosed && state != reports.CaseOpen {
		s.message(w, http.StatusBadRequest, "Not changed", "Choose open or closed.")
		return
	}
	// Closing deals with the attempts the page showed, no more: one made
	// while it was open must be seen first (and is, on the page again).
	seen := int64(-1)
	if state == reports.CaseClosed {
		var err error
		if seen, err = strconv.ParseInt(r.PostFormValue("seen"), 10, 64); err != nil || seen < 0 {
			s.message(w, http.StatusBadRequest, "Not closed", "The form had expired. Open the incident again and retry.")
			return
		}
	}
	before, after, err := s.o.Cases.SetStateSeen(c.ID, sess.account.Email, state, outcome, seen, s.o.Now())
	if errors.Is(err, reports.ErrNewAttempts) {
		s.message(w, http.StatusConflict, "Not closed: new attempts",
			fmt.Sprintf("There are new attempts since you opened this incident (%d now, %d on your page), so it was not closed. Open the incident again to see them, then close it.", c.Count, seen))
		return
	}
	if err != nil {
		s.fail(w, err)
		return
	}
	s.changed(w, r, sess, c, "incident.status", fmt.Sprintf("before=%q after=%q", before, after))
}

// history shows one person's, device's or address's incidents and
// blocked attempts over a date range (default: the last 30 days).
func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	who := r.URL.Query().Get("who")
	target := "person:" + who
	sess := s.casesSession(w, r, target)
	if sess == nil {
		return
	}
	kind, name, _ := strings.Cut(who, ":")
	if name == "" || (kind != "user" && kind != "device" && kind != "ip") || len(who) > 300 {
		s.message(w, http.StatusBadRequest, "Whose history?", "Open a history from an incident's page (a user, device or address).")
		return
	}
	today, _ := s.periods()
	from, to := today.AddDate(0, 0, -30), today
	var bad []string
	if v := r.URL.Query().Get("from"); v != "" {
		if t, err := time.ParseInLocation("2006-01-02", v, s.o.Location); err == nil {
			from = t
		} else {
			bad = append(bad, "from")
		}
	}
	if v := r.URL.Query().Get("to"); v != "" {
		if t, err := time.ParseInLocation("2006-01-02", v, s.o.Location); err == nil {
			to = t
		} else {
			bad = append(bad, "to")
		}
	}
	if len(bad) > 0 || to.Before(from) || to.Sub(from) > maxHistoryDay*24*time.Hour {
		s.message(w, http.StatusBadRequest, "Check the dates", fmt.Sprintf("Give dates as YYYY-MM-DD, from before to, at most %d days apart.", maxHistoryDay))
		return
	}
	until := to.AddDate(0, 0, 1)
	route, _ := routeFor(sess.account.Role)
	incs, total, err := s.o.Cases.IncidentPage(reports.IncidentQuery{Since: from, Until: until, AnySeverity: true, Route: route, Who: who, Limit: 200})
	if err != nil {
		s.fail(w, err)
		return
	}
	evs, err := s.o.Cases.WhoEvents(who, from, until, maxHistory+1)
	if err != nil {
		s.fail(w, err)
		return
	}
	if route != "" { // the headteacher: staff incidents' attempts only
		evs = slices.DeleteFunc(evs, func(e reports.StoredEvent) bool { return e.Route != route })
	}
	if err := s.record(r, sess, "view", target, fmt.Sprintf("history %s to %s", from.Format("2006-01-02"), to.Format("2006-01-02"))); err != nil {
		s.fail(w, err)
		return
	}
	data := base(sess)
	data["Who"], data["From"], data["To"], data["Incs"], data["IncTotal"] = who, from, to, incs, total
	data["T"] = makeTimeline(evs, maxHistory)
	s.render(w, http.StatusOK, "history", data)
}

// evidenceRows reads every attempt of an incident for the export.
func (s *Server) evidence(w http.ResponseWriter, r *http.Request, format string) (*session, *reports.Case, []reports.StoredEvent, bool) {
	sess, c := s.loadCase(w, r)
	if sess == nil {
		return nil, nil, nil, false
	}
	evs, err := s.o.Cases.IncidentEvents(c.ID, maxExport)
	if err != nil {
		s.fail(w, err)
		return nil, nil, nil, false
	}
	if err := s.record(r, sess, "export", incidentTarget(c.ID), "evidence "+format+": "+recordOf(c.Who)); err != nil {
		s.fail(w, err)
		return nil, nil, nil, false
	}
	return sess, c, evs, true
}

func (s *Server) evidenceHTML(w http.ResponseWriter, r *http.Request) {
	sess, c, evs, ok := s.evidence(w, r, "HTML")
	if !ok {
		return
	}
	log, alerts, err := s.caseRecord(c.ID)
	if err != nil {
		s.fail(w, err)
		return
	}
	// A file on its own: no navigation (Account is for the text only).
	data := map[string]any{"Account": "", "Exporter": sess.account.Email}
	data["C"], data["Events"], data["Log"], data["Alerts"], data["Made"] = c, evs, log, alerts, s.o.Now()
	// The file is opened from disk, away from the console: its style is
	// in it (the console's own stylesheet, embedded in the binary).
	css, err := assets.ReadFile("static/console.css")
	if err != nil {
		s.fail(w, err)
		return
	}
	data["CSS"] = template.CSS(css)
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="gatehouse-incident-%d.html"`, c.ID))
	s.render(w, http.StatusOK, "evidence", data)
}

func (s *Server) evidenceCSV(w http.ResponseWriter, r *http.Request) {
	_, c, evs, ok := s.evidence(w, r, "CSV")
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="gatehouse-incident-%d.csv"`, c.ID))
	if err := writeEvidenceCSV(w, c, evs, s.o.Location); err != nil {
		s.o.Log.Error("console: writing an evidence CSV", "incident", c.ID, "err", err)
	}
}

// caseRecord is an incident's case log and the alerts sent about it.
func (s *Server) caseRecord(id int64) ([]reports.CaseEntry, []reports.SentAlert, error) {
	log, err := s.o.Cases.CaseLog(id)
	if err != nil {
		return nil, nil, err
	}
	alerts, err := s.o.Cases.Alerts(id)
	return log, alerts, err
}
