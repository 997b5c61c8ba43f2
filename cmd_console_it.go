package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"time"

	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/console"
	"github.com/gatehouse-filter/gatehouse/tlsinspect"
)

// consoleIT is the console's view of the running filter: the snapshot
// decisions read, the reload path for the managed lists, the mis-block
// queue and the status page's facts, each from where it is kept.
func (s *server) consoleIT(consoleCert *tls.Certificate, consoleCertFile string) *console.IT {
	it := &console.IT{
		Engine: s.engine.Load,
		Apply: func() error {
			if s.cfgPath == "" {
				return errors.New("gatehouse serve was started without a config file (--config), so the managed lists cannot be applied")
			}
			cfg, err := config.Load(s.cfgPath)
			if err != nil {
				return err
			}
			return s.apply(cfg)
		},
		UpdateLists: func(ctx context.Context) error {
			_, err := s.lists.Update(ctx, nil, nil)
			return err
		},
	}
	if s.reports != nil {
		it.Reviews = s.reports.Store
	}
	var certNotAfter time.Time
	if consoleCert != nil && len(consoleCert.Certificate) > 0 {
		if c, err := x509.ParseCertificate(consoleCert.Certificate[0]); err == nil {
			certNotAfter = c.NotAfter
		}
	}
	it.Status = func() console.Status {
		cfg := s.engine.Load().Config()
		st := console.Status{Lists: s.lists.Status(), Problems: s.health.Problems()}
		if d := s.dnsLive.Load(); d != nil {
			for _, h := range d.Upstreams().Health() {
				st.Upstreams = append(st.Upstreams, console.UpstreamSet{Name: h.Name, Total: h.Total, Down: h.Down})
			}
		}
		if rep := s.reports; rep != nil {
			if rep.Mailer != nil {
				since, err := rep.Mailer.Healthy()
				st.Mail.Failing, st.Mail.Since = err != nil, since
				if err != nil {
					st.Mail.Error = err.Error()
				}
				st.Mail.Pending, _ = rep.Mailer.Pending()
			}
			if w := rep.Writer; w != nil {
				st.Events.Healthy, st.Events.Why = w.Healthy()
				st.Events.Written, st.Events.Dropped, st.Events.Lost, st.Events.Spilled = w.Written(), w.Dropped(), w.Lost(), w.Spilled()
			}
		}
		st.Database.Path = cfg.Database
		for _, f := range []string{cfg.Database, cfg.Database + "-wal"} {
			if fi, err := os.Stat(f); err == nil {
				st.Database.Bytes += fi.Size()
			}
		}
		if f := cfg.CACertFile(); f != "" {
			c, _, err := tlsinspect.LoadCert(f)
			switch {
			case errors.Is(err, fs.ErrNotExist):
			case err != nil:
				st.Certs = append(st.Certs, console.CertStatus{Name: "school CA", File: f, Error: err.Error()})
			default:
				st.Certs = append(st.Certs, console.CertStatus{Name: "school CA", File: f, NotAfter: c.NotAfter})
			}
		}
		if !certNotAfter.IsZero() {
			st.Certs = append(st.Certs, console.CertStatus{Name: "console", File: consoleCertFile, NotAfter: certNotAfter})
		}
		return st
	}
	return it
}

// consoleOIDC is console.oidc for the console, its secret read.
func consoleOIDC(cfg *config.Config) (*console.OIDC, error) {
	o := cfg.Console.OIDC
	if o == nil {
		return nil, nil
	}
	secret, err := o.ClientSecret.Read()
	if err != nil {
		return nil, errors.New("console.oidc.client_secret: " + err.Error())
	}
	return &console.OIDC{Issuer: o.Issuer, ClientID: o.ClientID, ClientSecret: secret, RedirectURL: o.RedirectURL,
		Domains: o.Domains, TrustIdPMFA: o.TrustIdPMFA, Label: o.Label, Client: &http.Client{Timeout: 30 * time.Second},
		// Google: only the school's Workspace accounts, not consumer
		// accounts made with a school address (as identity.signin).
		HostedDomain: config.GoogleIssuer(o.Issuer), Tenant: entraTenant(o.Issuer)}, nil
}
