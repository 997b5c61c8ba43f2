package main

import (
	"net/http"
	"time"

	"github.com/gatehouse-filter/gatehouse/internal/lograte"
)

// adminACL guards the admin listener as the other front doors are guarded:
// /metrics and /healthz answer admin.allow (clients.allow when that is
// empty), the pupil-facing pages (PAC file, block page, "report a
// mistake") answer clients.allow, and anyone else gets 403 and nothing
// more. The lists are read per request, so a reload applies at once.
func (s *server) adminACL(next http.Handler) http.Handler {
	var logged lograte.Limit
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip := remoteAddr(r)
		cfg := s.engine.Load().Config()
		allow := cfg.Clients.Allow
		if monitoring(r.URL.Path) && len(cfg.Admin.Allow) > 0 {
			allow = cfg.Admin.Allow
		}
		if clientAllowed(allow, ip) {
			next.ServeHTTP(w, r)
			return
		}
		if logged.Allow(time.Now(), 10*time.Second) {
			s.log.Warn("admin: refused a client outside the allow list (logged at most every 10s)", "client", ip.String(), "path", r.URL.Path)
		}
		w.Header().Set("Connection", "close")
		http.Error(w, "403 Forbidden", http.StatusForbidden)
	})
}

// monitoring reports whether path is one of IT's monitoring endpoints.
func monitoring(path string) bool {
	return path == "/metrics" || path == "/healthz"
}
