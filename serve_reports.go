package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/console"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// startReports opens the breach store and starts the event writer, alerts,
// digests, mail delivery and the retention purge. Changes to reports: take
// effect at the next restart.
func (s *server) startReports(ctx context.Context, cfg *config.Config, reg prometheus.Registerer) error {
	log := s.log.With("part", "reports")
	p, err := reports.FromConfig(cfg, log)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Database), 0o750); err != nil {
		return fmt.Errorf("database directory: %w", err)
	}
	p.Problems = s.health.Problems // lasting problems are mailed to IT (health.go)
	p.AuditHead = auditHead
	svc, err := reports.Start(ctx, cfg.Database, p)
	if err != nil {
		return err
	}
	if reg != nil {
		if err := reg.Register(&reportsCollector{svc: svc}); err != nil {
			svc.Close()
			return err
		}
	}
	s.reports = svc
	mail := "SMTP " + cfg.Reports.SMTP.Host
	if cfg.Reports.SMTP.Host == "" {
		mail = ".eml files in " + cfg.ReportsOutbox() + " (no smtp.host configured)"
	}
	log.Info("breach store open", "database", cfg.Database, "mail", mail, "digests", len(p.Schedules))
	return nil
}

// auditHead reads the console's audit log's end, the fingerprint every
// digest carries (reports.Parts.AuditHead).
func auditHead(tx *sql.Tx) (int64, string, error) { return console.AuditHead(tx) }

// reportSink is the sink the front doors record events into (nil before
// startReports).
func (s *server) reportSink() reports.Sink {
	if s.reports != nil {
		return s.reports
	}
	return nil
}

// stopReports flushes queued events, queues the alerts they cause and
// closes the database. Call it after the front doors have stopped.
func (s *server) stopReports() {
	if s.reports != nil {
		s.reports.Close()
		s.reports = nil
	}
}

// reportsCollector exports the writer's and mailer's counters.
type reportsCollector struct{ svc *reports.Service }

var (
	descEventsWritten = prometheus.NewDesc("gatehouse_reports_events_written_total", "Events committed to the breach store.", nil, nil)
	descEventsDropped = prometheus.NewDesc("gatehouse_reports_events_dropped_total", "Low-severity events dropped because the queue was full (high and critical are never dropped).", nil, nil)
	descMailSent      = prometheus.NewDesc("gatehouse_reports_mail_sent_total", "Messages accepted by the SMTP server (or written as .eml without SMTP).", nil, nil)
	descMailFailures  = prometheus.NewDesc("gatehouse_reports_mail_failures_total", "Failed delivery attempts.", nil, nil)
	descMailFailing   = prometheus.NewDesc("gatehouse_reports_mail_failing", "1 while mail delivery is failing: a message waits after a failed attempt, or the last attempt failed (copies go to the outbox directory).", nil, nil)
	descOutbox        = prometheus.NewDesc("gatehouse_reports_outbox_pending", "Messages waiting for delivery.", nil, nil)
	descWriterHealthy = prometheus.NewDesc("gatehouse_reports_writer_healthy", "1 while events are being committed; 0 while the database fails (events go to spill files) or events were lost in the last 10 minutes.", nil, nil)
	descCommits       = prometheus.NewDesc("gatehouse_reports_commits_total", "Transactions that committed events (events nobody waits for share one, about every 100 ms).", nil, nil)
	descCommitFails   = prometheus.NewDesc("gatehouse_reports_commit_failures_total", "Failed event commits (each retried with backoff; meanwhile events go to spill files).", nil, nil)
	descSpilled       = prometheus.NewDesc("gatehouse_reports_events_spilled", "Events in spill files beside the database, waiting for it to take writes.", nil, nil)
	descEventsLost    = prometheus.NewDesc("gatehouse_reports_events_lost_total", "Events of any severity lost because the database and the spill directory both failed.", nil, nil)
)

func (c *reportsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEventsWritten, descEventsDropped, descMailSent, descMailFailures, descMailFailing, descOutbox,
		descWriterHealthy, descCommits, descCommitFails, descSpilled, descEventsLost} {
		ch <- d
	}
}

func (c *reportsCollector) Collect(ch chan<- prometheus.Metric) {
	svc := c.svc
	ch <- prometheus.MustNewConstMetric(descEventsWritten, prometheus.CounterValue, float64(svc.Writer.Written()))
	ch <- prometheus.MustNewConstMetric(descEventsDropped, prometheus.CounterValue, float64(svc.Writer.Dropped()))
	healthy := 0.0
	if ok, _ := svc.Writer.Healthy(); ok {
		healthy = 1
	}
	ch <- prometheus.MustNewConstMetric(descWriterHealthy, prometheus.GaugeValue, healthy)
	ch <- prometheus.MustNewConstMetric(descCommits, prometheus.CounterValue, float64(svc.Writer.Commits()))
	ch <- prometheus.MustNewConstMetric(descCommitFails, prometheus.CounterValue, float64(svc.Writer.Failures()))
	ch <- prometheus.MustNewConstMetric(descSpilled, prometheus.GaugeValue, float64(svc.Writer.Spilled()))
	ch <- prometheus.MustNewConstMetric(descEventsLost, prometheus.CounterValue, float64(svc.Writer.Lost()))
	ch <- prometheus.MustNewConstMetric(descMailSent, prometheus.CounterValue, float64(svc.Mailer.Sent.Load()))
	ch <- prometheus.MustNewConstMetric(descMailFailures, prometheus.CounterValue, float64(svc.Mailer.Failed.Load()))
	failing := 0.0
	if _, err := svc.Mailer.Healthy(); err != nil {
		failing = 1
	}
	ch <- prometheus.MustNewConstMetric(descMailFailing, prometheus.GaugeValue, failing)
	if n, err := svc.Mailer.Pending(); err == nil {
		ch <- prometheus.MustNewConstMetric(descOutbox, prometheus.GaugeValue, float64(n))
	}
}
