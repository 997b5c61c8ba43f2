package console

import (
	"context"
	"net/http"
	"time"
)

// The status page shows what Gatehouse already knows about itself: the
// lists' status (blocklists.Manager.Status), the DNS upstreams, mail,
// the event writer, the database's size and the certificates, and the
// health checks' problems. Nothing is recomputed here. "Update now" runs
// the lists' own update (one at a time) in the background.

// listUpdateTimeout bounds an update started from the status page.
const listUpdateTimeout = 30 * time.Minute

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	sess := s.itUser(w, r, false)
	if sess == nil {
		return
	}
	s.renderStatus(w, sess, http.StatusOK, nil)
}

func (s *Server) renderStatus(w http.ResponseWriter, sess *session, code int, data map[string]any) {
	if data == nil {
		data = s.itData(sess)
	}
	var st Status
	if s.o.IT.Status != nil {
		st = s.o.IT.Status()
	}
	now := s.o.Now()
	type certRow struct {
		CertStatus
		Days int
	}
	certs := make([]certRow, len(st.Certs))
	for i, c := range st.Certs {
		certs[i] = certRow{c, int(c.NotAfter.Sub(now).Hours() / 24)}
	}
	data["S"], data["Certs"], data["Updating"] = st, certs, s.it.updating.Load()
	data["CanUpdate"] = s.o.IT.UpdateLists != nil
	s.render(w, code, "it_status", data)
}

func (s *Server) updateLists(w http.ResponseWriter, r *http.Request) {
	sess := s.itPost(w, r, false)
	if sess == nil {
		return
	}
	data := s.itData(sess)
	switch {
	case s.o.IT.UpdateLists == nil:
		data["Error"] = "Lists cannot be updated from here."
	case !s.it.updating.CompareAndSwap(false, true):
		data["Error"] = "An update is already running; reload this page to see when it ends."
	default:
		if err := s.itAudit(r, sess, "it.lists.update", "lists", "update now"); err != nil {
			s.it.updating.Store(false)
			s.fail(w, err)
			return
		}
		go func() {
			defer s.it.updating.Store(false)
			ctx, cancel := context.WithTimeout(context.Background(), listUpdateTimeout)
			defer cancel()
			if err := s.o.IT.UpdateLists(ctx); err != nil {
				s.o.Log.Error("console: list update failed", "err", err)
			}
		}()
		data["Done"] = "The update has started. Reload this page to see each list's last refresh and any error."
	}
	s.renderStatus(w, sess, http.StatusOK, data)
}
