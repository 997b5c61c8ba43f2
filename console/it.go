package console

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/health"
	"github.com/gatehouse-filter/gatehouse/policy"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// IT is what the console's IT pages (why blocked, allow and deny, the
// mis-block queue, status) need from the running Gatehouse. Nil: the
// pages answer that they are not available.
type IT struct {
	// Engine is the snapshot every decision reads now (with its config).
	Engine func() *policy.Engine
	// Apply reloads the config, and with it the managed lists, through
	// the normal reload path (a new snapshot is published; the running
	// one stays if it fails).
	Apply func() error
	// Reviews keeps the mis-block queue (the reports store).
	Reviews Reviews
	// Status is the status page's facts, gathered by their owners.
	Status func() Status
	// UpdateLists downloads every feed now and rebuilds the lists (the
	// lists' own update, published as a scheduled refresh is).
	UpdateLists func(context.Context) error
}

// Reviews is the mis-block queue's store; a second backend implements
// the same methods.
type Reviews interface {
	PendingMistakes(limit int) ([]reports.Mistake, error)
	PendingMistakeCount() (int, error)
	MistakeByID(id int64) (reports.Mistake, *reports.Review, error)
	ReviewMistake(id int64, r reports.Review) error
}

// Status is what the status page shows; every part is read from where
// Gatehouse already keeps it (the lists' status, the health checks).
type Status struct {
	Lists     []bl.ListStatus
	Upstreams []UpstreamSet
	Mail      MailStatus
	Events    EventsStatus
	Database  DatabaseStatus
	Certs     []CertStatus
	Problems  []health.Problem
}

// UpstreamSet is one set of DNS upstreams.
type UpstreamSet struct {
	Name  string
	Total int
	Down  []string
}

// MailStatus is the mailer's state.
type MailStatus struct {
	Failing bool
	Since   time.Time
	Error   string
	Pending int // messages in the outbox not sent yet
}

// EventsStatus is the event writer's state.
type EventsStatus struct {
	Healthy                bool
	Why                    string
	Written, Dropped, Lost uint64
	Spilled                int64
}

// DatabaseStatus is the reports database's size on disk.
type DatabaseStatus struct {
	Path  string
	Bytes int64 // the file with its WAL
}

// CertStatus is one certificate the school depends on.
type CertStatus struct {
	Name     string // "school CA", "console"
	File     string
	NotAfter time.Time
	Error    string
}

// it holds the IT pages' state.
type itState struct {
	mu       sync.Mutex  // serialises changes to the managed lists
	review   sync.Mutex  // serialises decisions on mistake reports
	updating atomic.Bool // a list update started from the status page is running
}

// maxQueue bounds the mis-block queue page.
const maxQueue = 200

// itPages are the IT pages' templates.
var itPages = []string{"it_why", "it_lists", "it_queue", "it_status", "oidc_continue"}

// itRoutes adds the IT pages.
func (s *Server) itRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /it/why", s.whyForm)
	mux.HandleFunc("POST /it/why", s.why)
	mux.HandleFunc("GET /it/lists", s.managedLists)
	mux.HandleFunc("POST /it/lists", s.managedAdd)
	mux.HandleFunc("POST /it/lists/remove", s.managedRemove)
	mux.HandleFunc("GET /it/queue", s.queue)
	mux.HandleFunc("POST /it/queue/{id}", s.review)
	mux.HandleFunc("GET /it/status", s.status)
	mux.HandleFunc("POST /it/status/update", s.updateLists)
}

// itUser returns the signed-in session when its role may use an IT page
// (it; the DSL too where dsl is set), answering for it otherwise.
func (s *Server) itUser(w http.ResponseWriter, r *http.Request, dsl bool) *session {
	sess := s.signedIn(w, r)
	if sess == nil {
		return nil
	}
	if role := sess.account.Role; role != RoleIT && !(dsl && role == RoleDSL) {
		s.message(w, http.StatusForbidden, "Not for this account", "This page is for IT.")
		return nil
	}
	if s.o.IT == nil || s.o.IT.Engine == nil || s.o.IT.Engine() == nil {
		s.message(w, http.StatusServiceUnavailable, "Not available", "Gatehouse's filter is not running in this process, so this page cannot be shown.")
		return nil
	}
	return sess
}

// itPost is itUser for a form: the form token must match too.
func (s *Server) itPost(w http.ResponseWriter, r *http.Request, dsl bool) *session {
	return s.formChecked(w, r, s.itUser(w, r, dsl))
}

// signedInPost is signedIn for a form: the form token must match too.
func (s *Server) signedInPost(w http.ResponseWriter, r *http.Request) *session {
	return s.formChecked(w, r, s.signedIn(w, r))
}

// formChecked returns sess if the form's token is its own; else it
// answers "the form had expired" and returns nil (nil sess: already
// answered).
func (s *Server) formChecked(w http.ResponseWriter, r *http.Request, sess *session) *session {
	if sess == nil {
		return nil
	}
	if !checkCSRF(r, sess) {
		s.message(w, http.StatusForbidden, "Request refused", "The form had expired. Please try again.")
		return nil
	}
	return sess
}

// itData is what every signed-in page's layout needs.
func (s *Server) itData(sess *session) map[string]any {
	a := sess.account
	return map[string]any{"Account": a.Email, "Role": roleName(a.Role), "CSRF": sess.csrf,
		"Auditor": a.Role == RoleAuditor || a.Role == RoleDSL, "IT": a.Role == RoleIT && s.o.IT != nil}
}

// itAudit writes an entry for the signed-in account.
func (s *Server) itAudit(r *http.Request, sess *session, action, target, detail string) error {
	return s.o.Store.Audit(Entry{Time: s.o.Now(), Actor: sess.account.Email, Addr: clientAddr(r).String(), Action: action, Target: target, Detail: detail})
}

// itHome adds the IT pages to IT's home page.
func (s *Server) itHome(data map[string]any) {
	if s.o.IT == nil {
		return
	}
	data["IT"] = true
	if s.o.IT.Reviews != nil {
		if n, err := s.o.IT.Reviews.PendingMistakeCount(); err == nil {
			data["Pending"] = n
		}
	}
}
