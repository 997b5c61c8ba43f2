package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"os/user"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/health"
	"github.com/gatehouse-filter/gatehouse/policy"
	dnsproxy "github.com/gatehouse-filter/gatehouse/proxy/dns"
	httpproxy "github.com/gatehouse-filter/gatehouse/proxy/http"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// server is a running Gatehouse: config, lists, policy and the listeners.
type server struct {
	log     *slog.Logger
	cfgPath string
	cfg     atomic.Pointer[config.Config]
	lists   *bl.Manager
	engine  atomic.Pointer[policy.Engine]
	reloads *prometheus.CounterVec
	watcher *config.Watcher
	admin   net.Addr          // the admin listener's address, once started
	dns     *dnsproxy.Server  // the DNS front door (serve_dns.go)
	proxy   *httpproxy.Server // the HTTP proxy (serve_proxy.go)
	reports *reports.Service  // the breach store, alerts and mail (serve_reports.go)
	health  health.Registry   // what /healthz and IT's health mail report (health.go)

	proxyResolver *proxyResolver // how the proxy resolves names (serve_proxy.go)
	proxyAddr     net.Addr       // the proxy listener's address, once started
	mu            sync.Mutex     // serialises reloads
}

func (c *cli) serve(args []string) int {
	if pos, err := parse(c.flags("serve"), args); err != nil || len(pos) > 0 {
		return exitUsage
	}
	cfg, code := c.loadConfig()
	if code != exitOK {
		return code
	}
	log := newLogger(cfg, os.Stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go tuneGC(ctx)
	s := &server{log: log, cfgPath: c.cfgPath}
	if c.cfgPath != "" {
		s.watcher = config.NewWatcher(c.cfgPath) // edits from now on are seen
	}
	if err := s.start(ctx, cfg); err != nil {
		log.Error("gatehouse did not start", "err", err)
		return exitFailure
	}
	<-ctx.Done()
	log.Info("gatehouse stopping")
	s.stopDNS()
	s.stopProxy()
	s.stopReports() // after the front doors: flushes their last events
	return exitOK
}

// start loads everything and starts the listeners and background work.
func (s *server) start(ctx context.Context, cfg *config.Config) error {
	from := cfg.Source
	if from == "" {
		from = "embedded defaults"
	}
	s.log.Info("gatehouse starting", "version", version, "config", from, "school", cfg.School.Name)
	lists, err := newLists(cfg, s.log)
	if err != nil {
		return err
	}
	s.lists = lists
	lists.FetchInBackground = true
	if _, err := lists.Load(ctx); err != nil {
		return err
	}
	eng, err := policy.New(cfg, lists)
	if err != nil {
		return err
	}
	s.engine.Store(eng)
	s.cfg.Store(cfg)
	lists.Start(ctx)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_config_reloads_total", Help: "Config reloads by result (ok or rejected).",
	}, []string{"result"})
	reg.MustRegister(s.reloads, &listsCollector{lists: lists})
	if err := s.startReports(ctx, cfg, reg); err != nil { // before the front doors: they record into it
		return err
	}
	if err := s.startProxy(ctx, cfg, reg); err != nil {
		return err
	}
	if err := s.startAdmin(ctx, cfg.Admin.Listen, reg); err != nil {
		return err
	}
	if err := s.startDNS(ctx, cfg, reg); err != nil {
		return err
	}
	if err := s.startBlockPage(ctx, cfg); err != nil { // serve_blockpage.go
		return err
	}
	s.watch(ctx)
	s.registerHealth() // health.go
	s.log.Info("gatehouse running", "admin", cfg.Admin.Listen, "groups", len(cfg.Groups))
	return nil
}

// startAdmin serves metrics and health on the admin listener, to the
// clients adminACL lets in.
func (s *server) startAdmin(ctx context.Context, addr string, reg *prometheus.Registry) error {
	if addr == "" {
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("GET /healthz", s.health.Handler()) // health.go
	if s.proxy != nil {
		mux.Handle("/", s.proxy.AdminHandler()) // PAC, WPAD, block page, "report a mistake"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}
	s.admin = ln.Addr()
	if s.proxy != nil {
		s.proxy.AddOwnListener(ln.Addr()) // never reached through the proxy
	}
	srv := &http.Server{Handler: s.adminACL(mux), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 60 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin listener stopped", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	return nil
}

// watch reloads the config on SIGHUP and when the file changes.
func (s *server) watch(ctx context.Context) {
	if s.cfgPath == "" {
		return
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				s.log.Info("SIGHUP: reloading config", "file", s.cfgPath)
				cfg, err := config.Load(s.cfgPath)
				if err != nil {
					s.rejected(err)
					continue
				}
				s.reload(cfg)
			}
		}
	}()
	if s.watcher == nil {
		s.watcher = config.NewWatcher(s.cfgPath)
	}
	go s.watcher.Run(ctx, 2*time.Second, s.reload, s.rejected)
}

// rejected logs an invalid config; the running one stays.
func (s *server) rejected(err error) {
	s.reloads.WithLabelValues("rejected").Inc()
	var errs config.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			s.log.Error("config rejected", "error", e.Error())
		}
	} else {
		s.log.Error("config rejected", "err", err)
	}
	s.log.Warn("keeping the running config", "file", s.cfgPath)
}

// reload applies a validated config: lists first, then the policy engine.
func (s *server) reload(cfg *config.Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sources, err := policy.Sources(cfg)
	if err != nil {
		s.rejected(err)
		return
	}
	// Build the engine against the manager before touching the lists, so a
	// bad group rejects the reload with nothing changed.
	eng, err := policy.New(cfg, s.lists)
	if err != nil {
		s.rejected(err)
		return
	}
	if _, err := s.lists.SetSources(sources); err != nil {
		s.rejected(err)
		return
	}
	old := s.cfg.Load()
	s.engine.Store(eng)
	s.cfg.Store(cfg)
	s.reloads.WithLabelValues("ok").Inc()
	changes := config.Diff(old, cfg)
	s.log.Info("config reloaded", "file", s.cfgPath, "owner", fileOwner(s.cfgPath), "changes", len(changes))
	for _, c := range changes {
		s.log.Info("config change", "change", c)
	}
}

// fileOwner names the owner of path (for the audit log of reloads).
func fileOwner(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	uid := strconv.FormatUint(uint64(st.Uid), 10)
	if u, err := user.LookupId(uid); err == nil {
		return u.Username
	}
	return "uid " + uid
}
