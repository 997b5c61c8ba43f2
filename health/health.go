// Package health collects what is wrong with a running Gatehouse. Each part
// (DNS upstreams, blocklists, mail, the event writer) registers a check that
// returns its current problems; /healthz serves them as JSON, and the
// reports package mails them to IT when they last.
package health

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// Problem is one thing that is wrong now.
type Problem struct {
	// Key identifies the problem while it lasts, e.g. "dns/upstreams/default"
	// or "lists/iwf": the same key on the next check is the same problem.
	Key string `json:"key"`
	// Part is the part of Gatehouse it is in: dns, lists, mail or events.
	Part string `json:"part"`
	// Message says what is wrong in plain English, for IT.
	Message string `json:"message"`
	// Warning marks something that still works but will not for long
	// (a CA about to expire): IT is told, /healthz stays 200.
	Warning bool `json:"warning,omitempty"`
}

// Check returns a part's current problems (none when it is healthy). It is
// called on every /healthz request and by the notifier, so it must be
// cheap and must not block.
type Check func() []Problem

// Registry holds the checks. The zero value is ready to use and reports
// "starting" until Ready is called.
type Registry struct {
	mu     sync.Mutex
	checks []named
	ready  bool
}

type named struct {
	name string
	fn   Check
}

// Register adds a check (or replaces the one of the same name).
func (r *Registry) Register(name string, fn Check) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.checks {
		if r.checks[i].name == name {
			r.checks[i].fn = fn
			return
		}
	}
	r.checks = append(r.checks, named{name, fn})
}

// Ready marks the start-up as finished: every part has registered.
func (r *Registry) Ready() {
	r.mu.Lock()
	r.ready = true
	r.mu.Unlock()
}

// Starting is the problem reported until Ready is called.
var Starting = Problem{Key: "starting", Part: "gatehouse", Message: "Gatehouse is still starting"}

// Problems runs every check and returns their problems sorted by key.
func (r *Registry) Problems() []Problem {
	r.mu.Lock()
	checks := slices.Clone(r.checks)
	ready := r.ready
	r.mu.Unlock()
	var out []Problem
	if !ready {
		out = append(out, Starting)
	}
	for _, c := range checks {
		out = append(out, c.fn()...)
	}
	slices.SortFunc(out, func(a, b Problem) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// Checks names the registered checks, in registration order.
func (r *Registry) Checks() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.checks))
	for i, c := range r.checks {
		out[i] = c.name
	}
	return out
}

// Report is the JSON body of /healthz.
type Report struct {
	// Status is "ok", "warning" (only warnings) or "degraded".
	Status   string    `json:"status"`
	Problems []Problem `json:"problems"`
	// Checks names what was checked.
	Checks []string `json:"checks"`
}

// Handler serves /healthz: 200 with status "ok" when nothing is wrong or
// "warning" when only warnings are, else 503 with status "degraded"; every
// problem is listed.
func (r *Registry) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		rep := Report{Status: "ok", Problems: r.Problems(), Checks: r.Checks()}
		if rep.Problems == nil {
			rep.Problems = []Problem{}
		}
		code := http.StatusOK
		for _, p := range rep.Problems {
			if !p.Warning {
				rep.Status, code = "degraded", http.StatusServiceUnavailable
				break
			}
			rep.Status = "warning"
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	})
}
