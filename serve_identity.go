package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/identity"
	"github.com/gatehouse-filter/gatehouse/identity/signin"
	"github.com/gatehouse-filter/gatehouse/internal/lograte"
	"github.com/gatehouse-filter/gatehouse/internal/peraddr"
	"github.com/gatehouse-filter/gatehouse/policy"
)

// startIdentity builds the identity table (who is behind an address) and
// starts its sources from identity: the people file, the DHCP lease files,
// the RADIUS accounting listener and the directory logins (identity.ldap).
// It runs before the front doors, which read the table on every query and
// request.
func (s *server) startIdentity(ctx context.Context, cfg *config.Config, reg prometheus.Registerer) error {
	id := cfg.Identity
	log := s.log.With("part", "identity")
	var lastFull atomic.Int64
	opts := identity.Options{MaxAddrs: id.MaxAddresses, Rules: identityRules(cfg),
		OnFull: func(netip.Addr, identity.Source) {
			if now := time.Now().Unix(); lastFull.Swap(now) < now-60 { // a line a minute at most
				log.Warn("identity table full: new addresses are not mapped until mappings end", "max_addresses", id.MaxAddresses)
			}
		}}
	// The directory and the people file are swapped by reloads
	// (serve_identity_live.go).
	s.ldap, s.people = &liveLDAP{}, &livePeople{}
	s.ldap.realms.Store(&id.StripRealm)
	if id.LDAP.URL != "" {
		l, err := newLDAP(id.LDAP)
		if err != nil {
			return err
		}
		s.ldap.cur.Store(l)
		if id.LDAP.Plain {
			log.Warn("PLAIN LDAP: proxy passwords cross the network unencrypted (identity.ldap.plain); a lab only", "url", id.LDAP.URL)
		}
	}
	if id.People != "" {
		people := &identity.People{Path: id.People}
		_, problems := people.Poll()
		for _, p := range problems {
			log.Warn("people file", "problem", p.Error())
		}
		s.people.cur.Store(people)
	}
	// What a directory login brought, before the people file.
	opts.Directory = identity.Directories{s.ldap, s.people}
	t := identity.New(opts)
	s.identity = t
	go t.Run(ctx.Done(), time.Second) // ended sessions and leases leave the table
	if reg != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gatehouse_identity_addresses", Help: "Addresses the identity table maps to a user or device.",
		}, func() float64 { return float64(t.Len()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "gatehouse_identity_refused_total", Help: "Mappings of new addresses refused because the identity table was full (identity.max_addresses).",
			}, func() float64 { return float64(t.Stats().Refused) }))
	}
	go func() { // the people file (the one the last reload named), re-read when it changes
		tk := time.NewTicker(5 * time.Second)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
			people := s.people.cur.Load()
			if people == nil {
				continue
			}
			changed, problems := people.Poll()
			for _, p := range problems {
				log.Warn("people file", "problem", p.Error())
			}
			if changed {
				t.Remerge()
			}
		}
	}()
	// The lease files, always polled: a reload may add some (Reconfigure).
	s.leases = &identity.Leases{Table: t, Log: log}
	s.leases.Files, s.leases.StaticMACs = leaseSettings(cfg) // serve_identity_live.go
	go s.leases.Run(ctx, 5*time.Second)
	if r := id.RADIUS; r.Listen != "" {
		secret, err := r.Secret.Read()
		if err != nil {
			return fmt.Errorf("identity.radius.secret: %w", err) // names the source, never the value
		}
		rs := &identity.RADIUS{Table: t, Secret: []byte(secret), NAS: r.NAS, Timeout: r.Timeout.D(), Realms: id.StripRealm, Log: log}
		if err := rs.Listen(r.Listen, reg); err != nil {
			return fmt.Errorf("identity.radius.listen: %w", err)
		}
		go rs.Serve(ctx)
		s.radius = rs
		log.Info("radius accounting listening", "addr", rs.Addr().String(), "nas", len(r.NAS))
	}
	return nil
}

// newLDAP builds the directory login checker from identity.ldap; the
// service account's password is read here and kept in memory only.
func newLDAP(c config.IdentityLDAP) (*identity.LDAP, error) {
	l := &identity.LDAP{URL: c.URL, StartTLS: c.StartTLS, Plain: c.Plain, BaseDN: c.BaseDN, UserFilter: c.UserFilter,
		BindDN: c.BindDN, ServiceDN: c.ServiceDN, DisplayAttr: c.Attributes.Display, YearAttr: c.Attributes.Year,
		ClassAttr: c.Attributes.Class, TTL: c.CacheTTL.D(), Timeout: c.Timeout.D()}
	if c.CAFile != "" {
		pool, err := config.LoadCertPool(c.CAFile) // the system roots and the file
		if err != nil {
			return nil, fmt.Errorf("identity.ldap.ca_file: %w", err)
		}
		l.RootCAs = pool
	}
	if c.ServicePassword != nil {
		pw, err := c.ServicePassword.Read()
		if err != nil {
			return nil, fmt.Errorf("identity.ldap.service_password: %w", err) // names the source, never the value
		}
		l.ServicePassword = pw
	}
	for _, g := range c.Groups {
		l.Groups = append(l.Groups, identity.LDAPGroup{DN: g.DN, Group: g.Group})
	}
	return l, nil
}

// reloadIdentity applies identity.groups from a reloaded config.
func (s *server) reloadIdentity(cfg *config.Config) {
	if s.identity != nil {
		s.identity.SetRules(identityRules(cfg))
	}
}

func identityRules(cfg *config.Config) []identity.Rule {
	var rules []identity.Rule
	for _, g := range cfg.Identity.Groups {
		rules = append(rules, identity.Rule{Match: g.Match, Group: g.Group})
	}
	return rules
}

// startSignin starts the sign-in page for devices without proxy settings
// (identity.signin) on its own listener: HTTPS with the configured
// certificate (re-read when renewed), or plain HTTP where config allows
// it. Only signin.allow (else clients.allow, read per request) reach it.
// Sign-ins kept in the database are put back in the table first; with the
// page off, any kept ones are deleted (they would name nobody now).
func (s *server) startSignin(ctx context.Context, cfg *config.Config, reg prometheus.Registerer) error {
	c := cfg.Identity.Signin
	var store *signin.Store
	if s.reports != nil {
		store = &signin.Store{DB: s.reports.Store.DB()}
	}
	if c.Listen == "" {
		if store != nil {
			if n, err := store.Clear(ctx); err != nil {
				s.log.Warn("sign-in page off: deleting kept sign-ins failed", "err", err)
			} else if n > 0 {
				s.log.Info("sign-in page off: kept sign-ins deleted", "count", n)
			}
		}
		return nil
	}
	log := s.log.With("part", "signin")
	secret, err := c.ClientSecret.Read()
	if err != nil {
		return fmt.Errorf("identity.signin.client_secret: %w", err) // names the source, never the value
	}
	client := &http.Client{Timeout: 30 * time.Second}
	if c.CAFile != "" {
		pool, err := config.LoadCertPool(c.CAFile) // the system roots and the file
		if err != nil {
			return fmt.Errorf("identity.signin.ca_file: %w", err)
		}
		client.Transport = &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			ForceAttemptHTTP2: true, TLSHandshakeTimeout: 10 * time.Second, IdleConnTimeout: 90 * time.Second}
	}
	var groups []signin.ClaimGroup
	for _, g := range c.Groups {
		groups = append(groups, signin.ClaimGroup{Claim: g.Claim, Value: g.Value, Group: g.Group})
	}
	svc, err := signin.New(signin.Options{Table: s.identity, Issuer: c.Issuer, ClientID: c.ClientID, ClientSecret: secret,
		RedirectURL: c.RedirectURL, Domains: c.Domains, LocalPart: c.User == "local_part", Groups: groups, TTL: cfg.SigninTTL(),
		HostedDomain: config.GoogleIssuer(c.Issuer), Tenant: entraTenant(c.Issuer),
		Allowed:      func(a netip.Addr) bool { return clientAllowed(s.engine.Load().Config().SigninAllow(), a) },
		SchoolDevice: s.schoolDevice,
		School:       cfg.School.Name, Label: c.Label, Location: cfg.Location(), Secure: c.Cert != "", Store: store,
		Client: client, Log: log, Registry: reg})
	if err != nil {
		return err
	}
	if n, err := svc.Restore(ctx); err != nil {
		log.Warn("kept sign-ins could not be read; pupils sign in again", "err", err)
	} else if n > 0 {
		log.Info("kept sign-ins restored", "count", n)
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("identity.signin.listen: %w", err)
	}
	if s.proxy != nil {
		s.proxy.AddOwnListener(ln.Addr()) // through the proxy, the page would name the proxy's own address
	}
	srv := &http.Server{Handler: svc.Handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second, MaxHeaderBytes: 16 << 10,
		ErrorLog: lograte.ServerLog(log, slog.LevelDebug, 10*time.Second)}
	if c.Cert != "" {
		cert := &signin.Cert{CertFile: c.Cert, KeyFile: c.Key}
		if err := cert.Load(); err != nil {
			ln.Close()
			return fmt.Errorf("identity.signin.cert: %w", err)
		}
		srv.TLSConfig = &tls.Config{GetCertificate: cert.GetCertificate, MinVersion: tls.VersionTLS12}
	} else if !config.ConsoleLoopback(c.Listen) {
		log.Warn("PLAIN HTTP sign-in page (identity.signin.plain_http): a lab only", "addr", ln.Addr().String())
	}
	serveUntil(ctx, srv, peraddr.Limit(ln, signinMaxConns, signin.MaxConnsPerAddr), log, "sign-in page")
	go svc.Run(ctx, time.Minute)
	s.signin, s.signinAt = svc, ln.Addr()
	log.Info("sign-in page listening", "addr", ln.Addr().String(), "tls", c.Cert != "", "ttl", cfg.SigninTTL().String())
	return nil
}

// schoolDevice names the static device (clients.devices) at a, by its
// address or by the MAC the identity table holds for it (a lease's, a
// RADIUS session's), as the policy engine decides it for DNS and the
// proxy; "" when none is.
func (s *server) schoolDevice(a netip.Addr) string {
	var mac string
	if e := s.identity.Lookup(a, time.Now().UnixNano()); e != nil {
		mac = e.MAC
	}
	if id := s.engine.Load().IdentifyRequest(policy.Request{Client: a, MAC: mac}); id.SchoolDevice {
		return id.Device
	}
	return ""
}

// entraTenant is the tenant ID of a Microsoft Entra ID issuer ("" for
// any other provider; config check refuses an Entra issuer without one).
func entraTenant(issuer string) string {
	t, _ := config.EntraIssuer(issuer)
	return t
}

// signinMaxConns bounds the sign-in page's open connections; more wait
// in the kernel's accept queue.
const signinMaxConns = 1024
