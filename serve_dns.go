package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"runtime/debug"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/policy"
	dnsproxy "github.com/gatehouse-filter/gatehouse/proxy/dns"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// startDNS starts the filtering resolver on cfg.DNS. The policy engine is
// read through s.engine on every query, so config reloads apply at once,
// and publish hands it clients.allow and dns.rate_limit; the rest of dns:
// (listeners, upstreams, cache, block answers) needs a restart.
func (s *server) startDNS(ctx context.Context, cfg *config.Config, reg prometheus.Registerer) error {
	log := s.log.With("part", "dns")
	opts, err := dnsOptions(cfg, s.admin, log)
	if err != nil {
		return err
	}
	if err := s.remoteDNS(ctx, cfg, &opts, log); err != nil { // serve_devices.go
		return err
	}
	opts.Engine = func() *policy.Engine { return s.engine.Load() }
	opts.Identity = s.identity // serve_identity.go
	if s.proxy != nil {
		// A user who logged in to the proxy from an address is the user
		// of that address's DNS queries too (their group, their events).
		opts.UserFor = s.proxy.Logins().UserFor
	}
	if s.proxy != nil && s.minter != nil {
		// The proxy decrypts with the school's CA (loaded at start): HTTPS
		// records of names a client's group decrypts lose h3.
		opts.Decrypting = func() bool { return true }
	}
	opts.Registry = reg
	opts.Log = log
	// Events go to the breach store when it is open, else to the log.
	opts.Sink = s.reportSink()
	if opts.Sink == nil {
		opts.Sink = &reports.LogSink{Log: s.log.With("part", "events")}
	}
	if m := cfg.DNS.MemoryLimitMiB; m > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(int64(m) << 20)
	}
	srv, err := dnsproxy.New(opts)
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	s.dns = srv
	s.remoteCert.warm(log) // serve_devices.go: ACME, once the listeners are up
	if s.proxy != nil {
		for _, a := range srv.Addrs() {
			s.proxy.AddOwnListener(a) // never reached through the proxy
		}
	}
	s.dnsLive.Store(srv) // publish applies reloads to it from now on
	if s.proxyResolver != nil {
		s.proxyResolver.dns.Store(srv) // the proxy resolves through the resolver from now on
	}
	return nil
}

// stopDNS answers in-flight queries, closes the listeners and flushes
// pending events (SIGTERM).
func (s *server) stopDNS() {
	if s.dns == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.dns.Shutdown(ctx)
}

// dnsOptions maps the dns: section onto the resolver's options.
func dnsOptions(cfg *config.Config, admin net.Addr, log *slog.Logger) (dnsproxy.Options, error) {
	d := cfg.DNS
	o := dnsproxy.Options{
		Listen:        d.Listen,
		ACL:           cfg.Clients.Allow,
		RateQPS:       d.RateLimit.QPS,
		RateBurst:     d.RateLimit.Burst,
		BlockResponse: d.BlockResponse,
		BlockTTL:      d.BlockTTL.D(),
		Cache: dnsproxy.CacheOptions{
			Entries: d.Cache.Entries, MinTTL: d.Cache.MinTTL.D(), MaxTTL: d.Cache.MaxTTL.D(),
			NegativeTTL: d.Cache.NegativeTTL.D(), ServeStale: d.Cache.ServeStale.D(), Prefetch: d.Cache.Prefetch,
		},
		HealthCheck: d.HealthCheck.D(),
		Collapse:    d.Events.Collapse.D(),
		Queue:       d.Events.Queue,
		QueryLog:    d.QueryLog.Enabled,
		Tunnel: dnsproxy.TunnelOptions{Action: d.Tunnel.Action, Threshold: d.Tunnel.Threshold,
			Window: d.Tunnel.Window.D(), BlockFor: d.Tunnel.BlockFor.D(), Allow: d.Tunnel.Allow},
	}
	o.BlockPageIP, _ = cfg.BlockPageAddr() // served on port 80 there (serve_blockpage.go)
	plain, err := cfg.Upstreams()
	if err != nil {
		return o, err
	}
	specs, err := upstreamSpecs("dns", plain, d.TLSUpstreams)
	if err != nil {
		return o, err
	}
	var zones []dnsproxy.Zone
	for _, f := range d.Forward {
		z := dnsproxy.Zone{Name: f.Zone}
		for _, sv := range f.Servers {
			ap, err := config.NormalizeIPPort(sv, 53)
			if err != nil {
				return o, fmt.Errorf("forward %s server %q: %w", f.Zone, sv, err)
			}
			z.Servers = append(z.Servers, dnsproxy.UpstreamSpec{Addr: ap})
		}
		zones = append(zones, z)
	}
	ups, err := dnsproxy.NewUpstreams(specs, zones, d.UpstreamTimeout.D(), log)
	if err != nil {
		return o, err
	}
	for _, g := range slices.Sorted(maps.Keys(d.GroupUpstreams)) {
		gu := d.GroupUpstreams[g]
		specs, err := upstreamSpecs("dns.group_upstreams."+g, gu.Upstreams, gu.TLSUpstreams)
		if err == nil {
			err = ups.AddGroup(g, specs)
		}
		if err != nil {
			return o, err
		}
	}
	o.Upstreams = ups
	if len(d.TLS.Listen) > 0 {
		cert, err := tls.LoadX509KeyPair(d.TLS.Cert, d.TLS.Key)
		if err != nil {
			return o, fmt.Errorf("dns.tls: %w", err)
		}
		o.TLSListen = d.TLS.Listen
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return o, nil
}

// upstreamSpecs turns configured plain and DNS-over-TLS upstreams into the
// resolver's specs, plain ones first.
func upstreamSpecs(where string, plain []string, tlsUps []config.TLSUpstream) ([]dnsproxy.UpstreamSpec, error) {
	var specs []dnsproxy.UpstreamSpec
	for _, u := range plain {
		ap, err := config.NormalizeIPPort(u, 53)
		if err != nil {
			return nil, fmt.Errorf("%s: upstream %q: %w", where, u, err)
		}
		specs = append(specs, dnsproxy.UpstreamSpec{Addr: ap})
	}
	for _, u := range tlsUps {
		ap, err := config.NormalizeIPPort(u.Address, 853)
		if err != nil {
			return nil, fmt.Errorf("%s: tls upstream %q: %w", where, u.Address, err)
		}
		specs = append(specs, dnsproxy.UpstreamSpec{Addr: ap, TLS: true, ServerName: u.ServerName})
	}
	return specs, nil
}
