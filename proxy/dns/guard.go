package dns

import (
	"errors"
	"fmt"
	"runtime/debug"

	mdns "github.com/miekg/dns"

	"github.com/gatehouse-filter/gatehouse/policy"
)

// Guards that keep one query, or one client, from costing more than its
// share: bounded waits on upstreams, and a panic that ends only its query.

// Default bounds on queries waiting on upstreams (each holds a goroutine
// and a UDP worker's buffers, ~10 KiB).
const (
	defaultMaxWaiting          = 1024
	defaultMaxWaitingPerSocket = 512
)

// errBusy is the error of a cache miss that found MaxWaiting queries (or,
// over UDP, MaxWaitingPerSocket on its socket) already waiting.
var errBusy = errors.New("too many queries waiting on upstreams")

// startWait is called before qr waits on an upstream: it takes one of the
// MaxWaiting slots and, over our own UDP workers, detaches the worker (see
// udpWriter.detach). At the limit it returns errBusy and qr is answered
// without waiting (stale or SERVFAIL).
func (s *Server) startWait(qr *query) error {
	if qr.waiting {
		return nil
	}
	if s.waiting.Add(1) > int64(s.opts.MaxWaiting) {
		s.waiting.Add(-1)
		s.metrics.upstreamBusy.Inc()
		return errBusy
	}
	if uw, ok := qr.w.(*udpWriter); ok && !uw.detach() {
		s.waiting.Add(-1)
		s.metrics.upstreamBusy.Inc()
		return errBusy
	}
	qr.waiting = true
	return nil
}

// endWait gives back what startWait took, once qr is answered.
func (s *Server) endWait(qr *query) {
	if !qr.waiting {
		return
	}
	qr.waiting = false
	s.waiting.Add(-1)
	if uw, ok := qr.w.(*udpWriter); ok {
		uw.l.waiting.Add(-1)
	}
}

// resolveWaiting resolves k for qr, which may wait on an upstream.
func (s *Server) resolveWaiting(qr *query, k cacheKey, class uint16, cacheable bool) (*entry, error) {
	if err := s.startWait(qr); err != nil {
		return nil, err
	}
	return s.resolve(k, class, cacheable)
}

// finish runs when serve returns (deferred): a panic while answering qr
// costs only qr, which is logged, counted and answered SERVFAIL if it can
// be; the worker or connection goes on serving.
func (s *Server) finish(qr *query) {
	if v := recover(); v != nil {
		s.panicked(qr, v, debug.Stack())
	}
	s.endWait(qr)
	s.inflight.Add(-1)
}

func (s *Server) panicked(qr *query, v any, stack []byte) {
	s.metrics.panics.Inc()
	s.opts.Log.Error("dns query panicked; answered SERVFAIL", "client", qr.client, "proto", qr.proto,
		"name", s.loggableName(qr), "qtype", mdns.Type(qr.q.Qtype).String(),
		"panic", fmt.Sprint(v), "stack", string(stack))
	defer func() { _ = recover() }() // the writer itself may be what failed
	if qr.r != nil && !answered(qr.w) {
		s.rcode(qr, mdns.RcodeServerFailure, qtypeLabel(qr.q.Qtype), "servfail", "")
	}
}

// answered reports whether w has sent an answer already (true when it
// cannot tell, so that a client never gets two).
func answered(w mdns.ResponseWriter) bool {
	switch w := w.(type) {
	case *udpWriter:
		return w.wrote
	case *trackedWriter:
		return w.wrote
	case *dohWriter:
		return w.out != nil
	}
	return true
}

// trackedWriter is a miekg/dns writer (TCP, DoT, miekg's UDP) that
// remembers whether it has answered.
type trackedWriter struct {
	mdns.ResponseWriter
	wrote bool
}

func (w *trackedWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *trackedWriter) WriteMsg(m *mdns.Msg) error {
	w.wrote = true
	return w.ResponseWriter.WriteMsg(m)
}

// loggableName is qr's question for a log line, unless it is on the
// restricted tier (never written in plain text) or that cannot be told
// (the policy engine itself failed on it).
func (s *Server) loggableName(qr *query) (name string) {
	if qr.q.Name == "" {
		return ""
	}
	name = "(withheld: the policy decision failed)"
	defer func() { _ = recover() }()
	eng := qr.eng
	if eng == nil {
		eng = s.opts.Engine()
	}
	d := eng.Decide(policy.Request{Client: qr.client, User: qr.user, Host: normName(qr.q.Name), Time: qr.now})
	if d.Restricted {
		return "(withheld: restricted list)"
	}
	return qr.q.Name
}
