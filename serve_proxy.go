package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/policy"
	dnsproxy "github.com/gatehouse-filter/gatehouse/proxy/dns"
	httpproxy "github.com/gatehouse-filter/gatehouse/proxy/http"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// startProxy starts the HTTP/HTTPS filtering proxy on cfg.Proxy.Listen. The
// policy engine, and the config it was built from, are read through
// s.engine (one snapshot) on every request, so reloads apply at once;
// listen, timeouts, limits, the login TTL and the users file path need a
// restart. Its admin pages (PAC file, block page,
// "report a mistake") are mounted on the admin listener by startAdmin.
func (s *server) startProxy(ctx context.Context, cfg *config.Config, reg prometheus.Registerer) error {
	if cfg.Proxy.Listen == "" {
		return nil
	}
	log := s.log.With("part", "proxy")
	// Upstream names are resolved by asking the configured upstream DNS
	// servers directly, never the system resolver.
	upstreams, err := cfg.Upstreams()
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	direct, err := httpproxy.NewUpstreamResolver(upstreams, cfg.DNS.UpstreamTimeout.D())
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	// Once the DNS front door runs, names go through it (its cache, forward
	// zones, DoT upstreams and CNAME-chain policy), so the proxy and DNS
	// cannot disagree; until then, and without it, straight to the upstreams.
	res := &proxyResolver{direct: direct, engine: s.engine.Load}
	s.proxyResolver = res
	sink := s.reportSink() // the breach store (serve_reports.go)
	if sink == nil {
		sink = &reports.LogSink{Log: s.log.With("part", "events")}
	}
	opts := httpproxy.Options{
		Engine:   s.engine.Load, // the config comes with it
		Resolver: res,
		Sink:     sink,
		Identity: s.identity, // serve_identity.go
		Registry: reg,
		Log:      log,
	}
	if s.ldap != nil {
		opts.Directory = s.ldap // serve_identity.go
	}
	if m := s.loadCA(cfg, log); m != nil { // serve_ca.go
		opts.Certs = m
	}
	p, err := httpproxy.New(opts)
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	res.user = p.Logins().UserFor
	ln, err := net.Listen("tcp", cfg.Proxy.Listen)
	if err != nil {
		return fmt.Errorf("proxy listener: %w", err)
	}
	p.AddOwnListener(ln.Addr()) // Serve adds it too; from here on, before any client
	go func() {
		if err := p.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("proxy listener stopped", "err", err)
		}
	}()
	s.proxy, s.proxyAddr = p, ln.Addr() // serve stops it in order: DNS, proxy, then the store
	// The transparent listeners (serve_transparent.go), if configured.
	if err := s.startTransparent(p, cfg, log); err != nil {
		return err
	}
	// Hand the lists' load-time garbage back to the system before clients
	// arrive: every idle client connection costs memory from here on.
	debug.FreeOSMemory()
	log.Info("proxy listening", "addr", ln.Addr().String())
	return nil
}

// proxyResolver resolves the proxy's upstream names through the DNS front
// door when it is running (which checks CNAME targets and addresses), else
// directly through the upstreams, checking the addresses against the IP
// lists itself. A refusal is a *policy.BlockedError, which the proxy
// answers as a block of the site.
type proxyResolver struct {
	dns    atomic.Pointer[dnsproxy.Server]
	direct httpproxy.Resolver
	engine func() *policy.Engine
	user   func(netip.Addr) string // the user logged in from a client, if known
}

func (r *proxyResolver) LookupNetIP(ctx context.Context, client netip.Addr, host string) ([]netip.Addr, error) {
	if d := r.dns.Load(); d != nil {
		return d.LookupNetIP(ctx, client, host)
	}
	addrs, err := r.direct.LookupNetIP(ctx, client, host)
	if err != nil || r.engine == nil {
		return addrs, err
	}
	eng := r.engine()
	if eng == nil || !eng.HasIPRules() {
		return addrs, nil
	}
	req := policy.Request{Client: client}
	if r.user != nil {
		req.User = r.user(client)
	}
	if d := eng.Decide(policy.Request{Client: client, User: req.User, Host: host}); d.Reason == policy.ReasonGroupAllow {
		return addrs, nil // the group allows the name itself
	}
	if d, i, _ := eng.DecideAddrs(req, addrs); i >= 0 {
		return nil, &policy.BlockedError{Name: host, Addr: addrs[i].Unmap(), Decision: d}
	}
	return addrs, nil
}

// stopProxy stops accepting, lets requests in flight finish and flushes
// collapsed events (SIGTERM).
func (s *server) stopProxy() {
	if s.proxy == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.proxy.Shutdown(ctx)
}
