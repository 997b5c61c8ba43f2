package console

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/explain"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// The mis-block queue: "report a mistake" forms from the block page that
// IT has not decided yet. IT sees what the decision needs (the block
// page's reference, when, the group, the site and what the person wrote),
// not who sent it. Approving adds an allow entry for the group (the
// managed lists, as the allow and deny page does); rejecting records why.

// queueRow is one pending report as the queue shows it.
type queueRow struct {
	reports.Mistake
	Site  string // the URL or name; for the restricted tier its title only
	Entry string // the allow entry an approval would add ("" when none can)
}

func (s *Server) queue(w http.ResponseWriter, r *http.Request) {
	sess := s.itUser(w, r, false)
	if sess == nil {
		return
	}
	s.renderQueue(w, r, sess, http.StatusOK, nil)
}

func (s *Server) renderQueue(w http.ResponseWriter, r *http.Request, sess *session, status int, data map[string]any) {
	if data == nil {
		data = s.itData(sess)
	}
	if s.o.IT.Reviews == nil {
		s.message(w, http.StatusServiceUnavailable, "Not available", "Reports are off (reports: in the config), so there is no mis-block queue.")
		return
	}
	list, err := s.o.IT.Reviews.PendingMistakes(maxQueue)
	if err != nil {
		s.fail(w, err)
		return
	}
	n, err := s.o.IT.Reviews.PendingMistakeCount()
	if err != nil {
		s.fail(w, err)
		return
	}
	rows := make([]queueRow, len(list))
	for i, m := range list {
		rows[i] = queueRow{Mistake: m, Site: m.URL, Entry: m.Name}
		if rows[i].Site == "" {
			rows[i].Site = m.Name
		}
		if m.Restricted {
			rows[i].Site, rows[i].Entry, rows[i].Note = restrictedTitle(m.Category), "", ""
		}
		// Who sent it is not IT's business.
		rows[i].Client, rows[i].Device, rows[i].User = "", "", ""
	}
	if err := s.itAudit(r, sess, "view", "mistakes:pending", fmt.Sprintf("mis-block queue: %d pending", n)); err != nil {
		s.fail(w, err)
		return
	}
	data["Rows"], data["Pending"], data["More"] = rows, n, n-len(rows)
	s.render(w, status, "it_queue", data)
}

// review approves or rejects one report, with a reason.
func (s *Server) review(w http.ResponseWriter, r *http.Request) {
	sess := s.itPost(w, r, false)
	if sess == nil {
		return
	}
	if s.o.IT.Reviews == nil {
		s.message(w, http.StatusServiceUnavailable, "Not available", "Reports are off, so there is no mis-block queue.")
		return
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		s.message(w, http.StatusNotFound, "No such report", "That report does not exist.")
		return
	}
	decision, reason := r.PostFormValue("decision"), strings.TrimSpace(r.PostFormValue("reason"))
	entry := strings.TrimSpace(r.PostFormValue("entry"))
	data := s.itData(sess)
	err = s.decide(r, sess, id, decision, reason, entry)
	var ue userError
	switch {
	case errors.As(err, &ue):
		data["Error"], data["ErrorID"] = string(ue), id
		s.renderQueue(w, r, sess, http.StatusBadRequest, data)
	case err != nil:
		s.fail(w, err)
	default:
		data["Done"] = fmt.Sprintf("Report %d %s.", id, decision)
		s.renderQueue(w, r, sess, http.StatusOK, data)
	}
}

func (s *Server) decide(r *http.Request, sess *session, id int64, decision, reason, entry string) error {
	if decision != reports.ReviewApproved && decision != reports.ReviewRejected {
		return userError("Choose approve or reject.")
	}
	if reason == "" {
		return userError("Give a reason: it is recorded with the decision.")
	}
	if len(reason) > 500 {
		return userError("The reason is longer than 500 characters.")
	}
	// One decision at a time: a report is decided once, and an approval
	// adds its entry before the decision is recorded.
	s.it.review.Lock()
	defer s.it.review.Unlock()
	m, rev, err := s.o.IT.Reviews.MistakeByID(id)
	if errors.Is(err, reports.ErrNoMistake) {
		return userError(fmt.Sprintf("There is no report %d.", id))
	}
	if err != nil {
		return err
	}
	if rev != nil {
		return userError(fmt.Sprintf("Report %d was %s by %s already.", id, rev.Status, rev.Actor))
	}
	target := fmt.Sprintf("mistake %d (ref %s)", id, m.Ref)
	detail := fmt.Sprintf("before: pending; after: %s, reason %q", decision, reason)
	if decision == reports.ReviewApproved {
		if m.Restricted {
			return userError("This report is about a site on a restricted list (illegal content): it is always blocked and cannot be allowed. Reject it.")
		}
		if entry == "" {
			entry = m.Name
		}
		if m.Group == "" || s.o.IT.Engine().Config().Groups[m.Group] == nil {
			return userError(fmt.Sprintf("The report's group %q is not in the config now, so there is nothing to allow it for: add an entry for another group on the allow and deny page.", m.Group))
		}
		if _, _, err := explain.SplitTarget(entry); err != nil {
			return userError(fmt.Sprintf("%q is not a site name or address.", entry))
		}
		if s.managedHas(m.Group, "allow", entry) {
			detail += fmt.Sprintf("; %s was already allowed for group %s", entry, m.Group)
		} else {
			err := s.addManaged(r, sess, m.Group, "allow", config.ManagedEntry{Entry: entry, Reason: reason + " (mistake report " + m.Ref + ")", Report: id})
			if err != nil {
				return err
			}
			detail += fmt.Sprintf("; %s allowed for group %s", entry, m.Group)
		}
	}
	if err := s.o.IT.Reviews.ReviewMistake(id, reports.Review{Status: decision, Reason: reason, Actor: sess.account.Email, Time: s.o.Now()}); err != nil {
		if errors.Is(err, reports.ErrReviewed) {
			return userError(fmt.Sprintf("Report %d was decided by someone else meanwhile.", id))
		}
		return err
	}
	return s.itAudit(r, sess, "it.mistake."+decision, target, detail)
}
