package main

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/identity"
)

// startIdentity builds the identity table (who is behind an address) and
// starts its sources from identity: the people file, the DHCP lease files
// and the RADIUS accounting listener. It runs before the front doors,
// which read the table on every query and request.
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
	var people *identity.People
	if id.People != "" {
		people = &identity.People{Path: id.People}
		_, problems := people.Poll()
		for _, p := range problems {
			log.Warn("people file", "problem", p.Error())
		}
		opts.Directory = people
	}
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
	if people != nil {
		go func() {
			tk := time.NewTicker(5 * time.Second)
			defer tk.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tk.C:
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
	}
	if len(id.DHCPLeases) > 0 {
		l := &identity.Leases{Table: t, Log: log, StaticMACs: map[string]string{}}
		for _, f := range id.DHCPLeases {
			l.Files = append(l.Files, identity.LeaseFile{Path: f.Path, Format: f.Format})
		}
		for _, d := range cfg.Clients.Devices {
			if m := identity.NormalizeMAC(d.MAC); m != "" {
				l.StaticMACs[m] = d.Name
			}
		}
		go l.Run(ctx, 5*time.Second)
	}
	if r := id.RADIUS; r.Listen != "" {
		secret, err := r.Secret.Read()
		if err != nil {
			return fmt.Errorf("identity.radius.secret: %w", err) // names the source, never the value
		}
		rs := &identity.RADIUS{Table: t, Secret: []byte(secret), NAS: r.NAS, Timeout: r.Timeout.D(), Log: log}
		if err := rs.Listen(r.Listen, reg); err != nil {
			return fmt.Errorf("identity.radius.listen: %w", err)
		}
		go rs.Serve(ctx)
		s.radius = rs
		log.Info("radius accounting listening", "addr", rs.Addr().String(), "nas", len(r.NAS))
	}
	return nil
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
