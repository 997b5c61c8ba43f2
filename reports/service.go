package reports

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/health"
)

// Parts is the reports subsystem built from a configuration.
type Parts struct {
	Options   Options
	Roles     Roles
	Mail      MailConfig
	Schedules []Schedule
	SendEmpty bool
	School    string
	Loc       *time.Location
	Breaches  time.Duration
	QueryLog  time.Duration
	// CaseRecords is how long case records are kept (0: kept until
	// deleted by hand).
	CaseRecords time.Duration

	// Problems, if set, is the running Gatehouse's health: lasting
	// problems are mailed to IT (health.go) after HealthAfter, with a
	// reminder every HealthRemind.
	Problems     func() []health.Problem
	HealthAfter  time.Duration
	HealthRemind time.Duration

	// AuditHead, if set, reads the console's audit log's last entry and
	// hash (console.AuditHead): each digest carries it as a fingerprint.
	AuditHead func(tx *sql.Tx) (int64, string, error)
}

// FromConfig turns the reports: section into the parts' settings. It reads
// the SMTP password secret.
func FromConfig(cfg *config.Config, log *slog.Logger) (Parts, error) {
	r := cfg.Reports
	p := Parts{
		Options: Options{
			IncidentWindow:     r.IncidentWindow.D(),
			Samples:            r.Samples,
			StaffToHeadteacher: r.StaffToHeadteacher,
			StaffGroups:        r.StaffGroups,
			AlertSeverity:      r.AlertSeverity,
			AlertDedup:         r.AlertDedup.D(),
			MistakeMailEvery:   r.MistakeMailEvery.D(),
			ConsoleURL:         cfg.Console.URL,
			QueueSize:          cfg.DNS.Events.Queue,
			PersonWindow:       cfg.Identity.Window.D(),
			Background:         true,
			Log:                log,
		},
		Roles:        Roles(r.Recipients),
		SendEmpty:    r.SendEmpty,
		School:       cfg.School.Name,
		Loc:          cfg.Location(),
		Breaches:     r.Retention.Breaches.D(),
		QueryLog:     r.Retention.QueryLog.D(),
		CaseRecords:  r.Retention.CaseRecords.D(),
		HealthAfter:  r.Health.NotifyAfter.D(),
		HealthRemind: r.Health.RemindEvery.D(),
		Mail: MailConfig{
			Host: r.SMTP.Host, Port: r.SMTP.Port, Username: r.SMTP.Username, From: r.SMTP.From,
			TLS: r.SMTP.TLS, Timeout: r.SMTP.Timeout.D(), Dir: cfg.ReportsOutbox(),
		},
	}
	if p.Roles == nil {
		p.Roles = Roles{}
	}
	if r.SMTP.Password != nil {
		pw, err := r.SMTP.Password.Read()
		if err != nil {
			return p, fmt.Errorf("reports.smtp.password: %w", err)
		}
		p.Mail.Password = pw
	}
	for _, d := range r.Digests {
		p.Schedules = append(p.Schedules, Schedule{Name: d.Name, Spec: cfg.DigestSpec(d), Roles: d.Recipients})
	}
	return p, nil
}

// Service runs the store, writer, alerter, digests, mailer and purge.
type Service struct {
	Store    *Store
	Writer   *Writer
	Alerter  *Alerter
	Digester *Digester
	Mailer   *Mailer
	Health   *HealthNotifier // nil without Parts.Problems
	// PurgeErr is why Tools' retention purge failed (nil: it did not).
	PurgeErr error

	roles  Roles // who is mailed, for the mail check
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// Start opens the database and starts everything. Close stops it.
func Start(ctx context.Context, dbPath string, p Parts) (*Service, error) {
	s, err := open(dbPath, p) // RunPurge purges at once
	if err != nil {
		return nil, err
	}
	st := s.Store
	w, err := NewWriter(st, p.Options)
	if err != nil {
		st.Close()
		return nil, err
	}
	ctx, s.cancel = context.WithCancel(ctx)
	s.Writer = w
	w.Alertable = s.Alerter.Wake
	s.Digester.Spilled = w.Spilled
	s.goRun(func() { s.Mailer.Run(ctx) })
	s.goRun(func() { s.Alerter.Run(ctx, 15*time.Second) })
	s.goRun(func() { s.Digester.Run(ctx) })
	s.goRun(func() { st.RunPurge(ctx, p.Options, p.Breaches, p.QueryLog, p.CaseRecords) })
	if p.Problems != nil {
		n := NewHealthNotifier(st, p.Options, p.Roles, p.School, p.Loc, s.Mailer, p.Problems)
		if p.HealthAfter > 0 {
			n.After = p.HealthAfter
		}
		if p.HealthRemind > 0 {
			n.Remind = p.HealthRemind
		}
		s.Health = n
		s.goRun(func() { n.Run(ctx, 30*time.Second) })
	}
	return s, nil
}

// Tools opens the database for the CLI: no writer and no background work.
// It first purges what is past p's retention (as serve's daily purge
// does), so that nothing the command shows or exports is older than
// retention allows, whether or not serve runs. A purge that fails is
// logged and kept in PurgeErr (for the command to say so), and the
// command goes on.
func Tools(dbPath string, p Parts) (*Service, error) {
	s, err := open(dbPath, p)
	if err != nil {
		return nil, err
	}
	if p.Breaches > 0 && p.QueryLog > 0 {
		o := p.Options
		o.fill()
		ctx := context.Background()
		_, perr := s.Store.Purge(ctx, o.Now(), p.Breaches, p.QueryLog)
		_, cerr := s.Store.PurgeCases(ctx, o.Now(), p.CaseRecords)
		if s.PurgeErr = errors.Join(perr, cerr); s.PurgeErr != nil {
			o.Log.Error("retention purge failed", "err", s.PurgeErr)
		}
	}
	return s, nil
}

// open opens the database and builds the service's parts.
func open(dbPath string, p Parts) (*Service, error) {
	st, err := Open(dbPath)
	if err != nil {
		return nil, err
	}
	s, err := build(st, p)
	if err != nil {
		st.Close()
		return nil, err
	}
	s.cancel = func() {}
	return s, nil
}

func build(st *Store, p Parts) (*Service, error) {
	p.Options.fill()
	mc := p.Mail
	if mc.Roles == nil {
		mc.Roles = p.Roles
	}
	m := NewMailer(st, mc, p.Options.Log, p.Options.Now)
	d, err := NewDigester(st, p.Options, p.Roles, p.School, p.Loc, p.Schedules, p.SendEmpty, m)
	if err != nil {
		return nil, err
	}
	d.auditHead = p.AuditHead
	return &Service{Store: st, Mailer: m, Digester: d, Alerter: NewAlerter(st, p.Options, p.Roles, p.School, p.Loc, m), roles: p.Roles}, nil
}

func (s *Service) goRun(f func()) {
	s.wg.Add(1)
	go func() { defer s.wg.Done(); f() }()
}

// Record is the front doors' sink.
func (s *Service) Record(ev Event) bool { return s.Writer.Record(ev) }

// RecordSeq, IsDurable and AfterDurable make the service a DurableSink.
func (s *Service) RecordSeq(ev Event) uint64 { return s.Writer.RecordSeq(ev) }

// IsDurable: see DurableSink.
func (s *Service) IsDurable(seq uint64) bool { return s.Writer.IsDurable(seq) }

// AfterDurable: see DurableSink.
func (s *Service) AfterDurable(seq uint64, w Waiter) bool { return s.Writer.AfterDurable(seq, w) }

// Close flushes the event queue, queues the alerts it causes, stops the
// background work and closes the database. Stop the front doors first.
func (s *Service) Close() {
	s.once.Do(func() {
		if s.Writer != nil {
			s.Writer.Close()
			if _, err := s.Alerter.Check(context.Background()); err != nil {
				s.Alerter.opt.Log.Error("checking alerts at shutdown", "err", err)
			}
		}
		s.cancel()
		s.wg.Wait()
		s.Store.Close()
	})
}
