package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/health"
	"github.com/gatehouse-filter/gatehouse/tlsinspect"
)

// registerHealth registers the checks of every part that started and
// marks start-up finished: from now on /healthz answers 200 only when
// nothing is wrong. The checks keep their own references, so stopping a
// part at shutdown does not race with a health request.
func (s *server) registerHealth() {
	lists := s.lists
	s.health.Register("lists", func() []health.Problem { return listProblems(lists, time.Now()) })
	if s.dns != nil {
		ups := s.dns.Upstreams()
		s.health.Register("dns", func() []health.Problem {
			var out []health.Problem
			for _, h := range ups.Health() {
				if h.AllDown() {
					out = append(out, health.Problem{Key: "dns/upstreams/" + h.Name, Part: "dns",
						Message: fmt.Sprintf("every upstream DNS server of the %s set is down (%s): names it serves cannot be resolved",
							h.Name, strings.Join(h.Down, ", "))})
				}
			}
			return out
		})
	}
	if s.reports != nil {
		events, mail := s.reports.HealthChecks()
		s.health.Register("events", events)
		s.health.Register("mail", mail)
	}
	// The school's CA, once there is one (HTTPS inspection is opt-in):
	// read at start, as the proxy's CA is.
	certFile, caErr := s.engine.Load().Config().CACertFile(), s.caErr
	if _, err := os.Stat(certFile); s.proxy != nil && (err == nil || caErr != nil) {
		s.health.Register("ca", tlsinspect.HealthCheck(func() string { return certFile }, func() error { return caErr }, time.Now))
	}
	s.health.Ready()
}

// staleFeedAfter is how old a feed's copy in use may get while its
// downloads fail before /healthz warns.
const staleFeedAfter = 24 * time.Hour

// listProblems reports every configured list that is not in the index in
// use (never loaded, or not downloaded yet), and as a warning every list
// whose last load failed while an earlier copy stays in use: a local list
// at once (IT's change is not applied), a feed once its copy is
// staleFeedAfter old (one failed download is retried at its next refresh).
func listProblems(lists *bl.Manager, now time.Time) []health.Problem {
	if lists.Index() == nil {
		return []health.Problem{{Key: "lists", Part: "lists", Message: "no blocklists are loaded yet"}}
	}
	var out []health.Problem
	for _, st := range lists.Status() {
		if st.Loaded && st.Failing() && (!st.Feed || now.Sub(st.LastSuccess) >= staleFeedAfter) {
			since := "earlier"
			if !st.LastSuccess.IsZero() {
				since = "at " + st.LastSuccess.UTC().Format(time.RFC3339)
			}
			out = append(out, health.Problem{Key: "lists/" + st.Name, Part: "lists", Warning: true,
				Message: fmt.Sprintf("warning: list %s: the last load or refresh failed%s, so the copy loaded %s is still in use: %s",
					st.Name, inARow(st.Failures), since, st.LastError)})
			continue
		}
		if st.Loaded {
			continue
		}
		why := st.LastError
		if why == "" {
			why = "not loaded yet"
		}
		out = append(out, health.Problem{Key: "lists/" + st.Name, Part: "lists",
			Message: fmt.Sprintf("list %s is not loaded, so nothing on it is blocked or allowed: %s", st.Name, why)})
	}
	return out
}

// inARow says how many attempts in a row failed, when more than one.
func inARow(n int) string {
	if n < 2 {
		return ""
	}
	return fmt.Sprintf(" (%d in a row)", n)
}

// listsCollector exports blocklist sizes and the state of every configured
// list at scrape time.
type listsCollector struct{ lists *bl.Manager }

var (
	descListEntries = prometheus.NewDesc("gatehouse_blocklist_entries", "Entries loaded per list.", []string{"list", "category"}, nil)
	descListInvalid = prometheus.NewDesc("gatehouse_blocklist_invalid_lines", "Rejected lines per list.", []string{"list"}, nil)
	descListError   = prometheus.NewDesc("gatehouse_blocklist_failed", "1 when the last attempt to load or download a configured list failed.", []string{"list"}, nil)
	descListLoaded  = prometheus.NewDesc("gatehouse_blocklist_loaded", "1 when a configured list is in the index in use, 0 when it is not (never loaded or not downloaded yet).", []string{"list"}, nil)
	descListSuccess = prometheus.NewDesc("gatehouse_blocklist_last_success_timestamp_seconds", "When a configured list last loaded or downloaded without error (0: not known; a feed's is kept across restarts).", []string{"list"}, nil)
	descListLastErr = prometheus.NewDesc("gatehouse_blocklist_last_error_timestamp_seconds", "When loading or downloading a configured list last failed (0: not known; a feed's is kept across restarts).", []string{"list"}, nil)
	descListFails   = prometheus.NewDesc("gatehouse_blocklist_consecutive_failures", "Downloads of a feed (loads of a local list) in a row that failed since its last success, kept across restarts for feeds.", []string{"list"}, nil)
	descListSource  = prometheus.NewDesc("gatehouse_blocklist_source_entries", "Entries of a configured list in the index in use (0 when not loaded).", []string{"list"}, nil)
	descIndexNames  = prometheus.NewDesc("gatehouse_blocklist_index_domains", "Distinct domains in the index.", nil, nil)
	descIndexBuilt  = prometheus.NewDesc("gatehouse_blocklist_index_built_timestamp_seconds", "When the index in use was built.", nil, nil)
)

func (c *listsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descListEntries, descListInvalid, descListError, descListLoaded, descListSuccess,
		descListLastErr, descListFails, descListSource, descIndexNames, descIndexBuilt} {
		ch <- d
	}
}

func (c *listsCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	unix := func(st bl.ListStatus, last bool) float64 {
		t := st.LastSuccess
		if last {
			t = st.LastErrorAt
		}
		if t.IsZero() {
			return 0
		}
		return float64(t.Unix())
	}
	// Every configured list, loaded or not.
	for _, st := range c.lists.Status() {
		gauge(descListLoaded, b2f(st.Loaded), st.Name)
		gauge(descListSource, float64(st.Entries), st.Name)
		gauge(descListSuccess, unix(st, false), st.Name)
		gauge(descListLastErr, unix(st, true), st.Name)
		gauge(descListError, b2f(st.Failing()), st.Name)
		gauge(descListFails, float64(st.Failures), st.Name)
	}
	ix := c.lists.Index()
	if ix == nil {
		return
	}
	// Every file in the index (squidGuard trees have one per category).
	for _, l := range ix.Lists() {
		gauge(descListEntries, float64(l.Entries), l.Name, categoryName(l.Category))
		gauge(descListInvalid, float64(l.Invalid), l.Name)
	}
	st := ix.Stats()
	gauge(descIndexNames, float64(st.Domains))
	gauge(descIndexBuilt, float64(st.BuiltAt.Unix()))
}
