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
	"strings"
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
	"github.com/gatehouse-filter/gatehouse/identity"
	"github.com/gatehouse-filter/gatehouse/identity/signin"
	"github.com/gatehouse-filter/gatehouse/policy"
	dnsproxy "github.com/gatehouse-filter/gatehouse/proxy/dns"
	httpproxy "github.com/gatehouse-filter/gatehouse/proxy/http"
	"github.com/gatehouse-filter/gatehouse/reports"
	"github.com/gatehouse-filter/gatehouse/tlsinspect"
)

// server is a running Gatehouse: config, lists, policy and the listeners.
type server struct {
	log     *slog.Logger
	cfgPath string
	lists   *bl.Manager
	// engine is the one snapshot every decision reads: the policy engine,
	// the config it was built from and the list index built from that
	// config's lists. Only publish stores it, always under the lists'
	// lock (see reload and start).
	engine  atomic.Pointer[policy.Engine]
	reloads *prometheus.CounterVec
	watcher *config.Watcher
	admin   net.Addr          // the admin listener's address, once started
	dns     *dnsproxy.Server  // the DNS front door (serve_dns.go)
	proxy   *httpproxy.Server // the HTTP proxy (serve_proxy.go)
	reports *reports.Service  // the breach store, alerts and mail (serve_reports.go)
	health  health.Registry   // what /healthz and IT's health mail report (health.go)

	identity *identity.Table  // who is behind an address (serve_identity.go)
	radius   *identity.RADIUS // the RADIUS accounting listener, if on (serve_identity.go)
	ldap     *liveLDAP        // directory logins for the proxy, swapped by reloads (serve_identity_live.go)
	people   *livePeople      // the people file, swapped by reloads (serve_identity_live.go)
	leases   *identity.Leases // the DHCP lease files (serve_identity.go)
	signin   *signin.Service  // the sign-in page, if on (serve_identity.go)
	signinAt net.Addr         // its listener's address, once started

	remoteCert *remoteCert // the off-site listeners' certificate, if on (serve_devices.go)

	proxyResolver *proxyResolver     // how the proxy resolves names (serve_proxy.go)
	caErr         error              // why the school's CA could not be loaded (serve_ca.go)
	minter        *tlsinspect.Minter // the school's CA's leaves, when it is loaded (serve_ca.go)
	proxyAddr     net.Addr           // the proxy listener's address, once started
	tpAddrs       [2]net.Addr        // the transparent HTTP and HTTPS listeners' addresses, once started (serve_transparent.go)
	consoleAddr   net.Addr           // the console's address, once started (cmd_console.go)
	mu            sync.Mutex         // serialises reloads

	logLevel *slog.LevelVar // the log's level (nil: fixed), set by reload

	listsStopped <-chan struct{} // closed once list refreshes have stopped (blocklists.Manager.Start)

	// dnsLive is s.dns for publish, which may run (a background list
	// download) while start is still setting s.dns.
	dnsLive atomic.Pointer[dnsproxy.Server]
}

func (c *cli) serve(args []string) int {
	if pos, err := parse(c.flags("serve"), args); err != nil || len(pos) > 0 {
		return exitUsage
	}
	cfg, code := c.loadConfig()
	if code != exitOK {
		return code
	}
	level := new(slog.LevelVar)
	log := newLogger(cfg, os.Stderr, level)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go tuneGC(ctx)
	writerProc()
	s := &server{log: log, logLevel: level, cfgPath: c.cfgPath}
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
	if s.listsStopped != nil {
		// A refresh under way is cancelled with ctx; let it end before
		// the process does (it writes the list cache), but not forever.
		select {
		case <-s.listsStopped:
		case <-time.After(5 * time.Second):
			log.Warn("a list refresh was still ending at shutdown")
		}
	}
	return exitOK
}

// start loads everything and starts the listeners and background work.
func (s *server) start(ctx context.Context, cfg *config.Config) error {
	from := cfg.Source
	if from == "" {
		from = "embedded defaults"
	}
	s.log.Info("gatehouse starting", "version", version, "config", from, "school", cfg.School.Name)
	for _, w := range cfg.Warnings() {
		s.log.Warn("config warning", "warning", w)
	}
	lists, err := newLists(cfg, s.log)
	if err != nil {
		return err
	}
	s.lists = lists
	lists.FetchInBackground = true
	if _, err := policy.New(cfg, nil); err != nil { // the groups, before loading any list
		return err
	}
	// Every index the lists build from now on (the first load, background
	// downloads, scheduled refreshes) is published with an engine for the
	// config in use; a reload publishes its own (see reload).
	lists.SetPublisher(func(ix *bl.Index) error {
		cur := cfg
		if e := s.engine.Load(); e != nil {
			cur = e.Config()
		}
		return s.publish(cur, ix)
	})
	if _, err := lists.Load(ctx); err != nil {
		return err
	}
	s.listsStopped = lists.Start(ctx)

	reg := prometheus.NewRegistry()
	// The scheduler's metrics too (go_sched_*): how long goroutines waited
	// to run and how long each garbage collection stopped them, for a DNS
	// or proxy tail that the answer histograms alone cannot place.
	reg.MustRegister(collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsScheduler)),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_config_reloads_total", Help: "Config reloads by result (ok or rejected).",
	}, []string{"result"})
	reg.MustRegister(s.reloads, &listsCollector{lists: lists})
	if err := s.startReports(ctx, cfg, reg); err != nil { // before the front doors: they record into it
		return err
	}
	if err := s.startIdentity(ctx, cfg, reg); err != nil { // serve_identity.go; before the front doors
		return err
	}
	if err := s.startProxy(ctx, cfg, reg); err != nil {
		return err
	}
	if err := s.startSignin(ctx, cfg, reg); err != nil { // serve_identity.go; after the proxy, which must never reach it
		return err
	}
	if err := s.startAdmin(ctx, cfg, reg); err != nil {
		return err
	}
	if err := s.startConsole(ctx, cfg); err != nil { // cmd_console.go
		return err
	}
	if err := s.startDNS(ctx, cfg, reg); err != nil {
		return err
	}
	if err := s.startBlockPage(ctx, cfg); err != nil { // serve_blockpage.go
		return err
	}
	s.startBlockPageTLS(ctx, cfg) // serve_ca.go
	s.watch(ctx)
	s.registerHealth() // health.go
	s.log.Info("gatehouse running", "admin", cfg.Admin.Listen, "groups", len(cfg.Groups))
	return nil
}

// startAdmin serves metrics and health on the admin listener, to the
// clients adminACL lets in.
func (s *server) startAdmin(ctx context.Context, cfg *config.Config, reg *prometheus.Registry) error {
	addr := cfg.Admin.Listen
	if addr == "" {
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("GET /healthz", s.health.Handler()) // health.go
	for _, p := range []string{"GET /ca", "GET /ca.pem", "GET /ca.crt"} {
		mux.Handle(p, s.caHandler()) // serve_ca.go: the school's CA for devices and IT
	}
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
	srv := &http.Server{Handler: s.adminACL(mux), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 60 * time.Second,
		MaxHeaderBytes: 16 << 10}
	serveUntil(ctx, srv, limitPageConns(ln, cfg), s.log, "admin listener") // serve_blockpage.go
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

// reload applies a validated config; a config it cannot apply is
// rejected and the running one stays.
func (s *server) reload(cfg *config.Config) {
	if err := s.apply(cfg); err != nil {
		s.rejected(err)
	}
}

// apply applies a validated config. The lists are rebuilt for its
// sources and published together with its engine as one snapshot, under
// the lists' lock, so a list refresh built for the old sources cannot be
// published after it (lock order: s.mu, then the lists' lock; publishing
// never takes s.mu). On error nothing has changed. The console's managed
// lists are applied through it too (cmd_console_it.go).
func (s *server) apply(cfg *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The files are read before the lock is taken (SIGHUP, the watcher,
	// the console's managed lists): a config read before the running one
	// would undo what changed in between, and the running one already
	// holds everything it saw.
	if running := s.engine.Load().Config(); cfg.ReadSeq() != 0 && cfg.ReadSeq() < running.ReadSeq() {
		s.log.Info("config reload skipped: a config read after it is already running", "file", s.cfgPath)
		return nil
	}
	sources, err := policy.Sources(cfg)
	if err != nil {
		return err
	}
	// Check the groups before touching the lists, so a bad group rejects
	// the reload with nothing changed.
	if _, err := policy.New(cfg, nil); err != nil {
		return err
	}
	old := s.engine.Load().Config()
	idPlan, err := s.prepareIdentity(old, cfg) // serve_identity_live.go: before anything changes
	if err != nil {
		return err
	}
	swapRemoteCert, err := s.prepareRemoteCert(old, cfg) // serve_devices.go
	if err != nil {
		return err
	}
	if _, err := s.lists.SetSources(sources, func(ix *bl.Index) error { return s.publish(cfg, ix) }); err != nil {
		return err
	}
	if s.logLevel != nil {
		s.logLevel.Set(cfg.Log.SlogLevel())
	}
	s.applyIdentity(idPlan) // serve_identity_live.go
	swapRemoteCert()
	s.reloadIdentity(cfg) // serve_identity.go: the rules, then every address merged again
	s.reloads.WithLabelValues("ok").Inc()
	changes := config.Diff(old, cfg)
	s.log.Info("config reloaded", "file", s.cfgPath, "owner", fileOwner(s.cfgPath), "changes", len(changes))
	for _, w := range cfg.Warnings() {
		s.log.Warn("config warning", "warning", w)
	}
	for _, c := range changes {
		if liveChange(c.Path) && !s.startedWithout(c.Path) {
			s.log.Info("config change", "change", c.Text, "status", "applied")
		} else {
			s.log.Warn("config change", "change", c.Text, "status", "needs a restart")
		}
	}
	return nil
}

// publish makes cfg with the list index ix the snapshot every decision
// reads, and applies the settings the front doors take live. The lists
// call it under their lock, once per index, in order.
func (s *server) publish(cfg *config.Config, ix *bl.Index) error {
	eng, err := policy.New(cfg, ix)
	if err != nil {
		return err
	}
	s.engine.Store(eng)
	if d := s.dnsLive.Load(); d != nil {
		d.SetAccess(cfg.Clients.Allow, cfg.DNS.RateLimit.QPS, cfg.DNS.RateLimit.Burst)
	}
	return nil
}

// liveChange reports whether a reload applies a change at path (a
// config.Change path) at once; everything else is read only at start.
func liveChange(path string) bool {
	for _, p := range liveSettings {
		if path == p || strings.HasPrefix(path, p+".") {
			return true
		}
	}
	return false
}

// liveSettings are the config paths a reload applies: the policy engine's
// (groups, lists, categories, clients), what the proxy reads per request,
// the DNS front door's access settings (publish) and the log level.
var liveSettings = []string{
	"groups", "lists", "categories", "clients", "log.level", "watchlists",
	"dns.rate_limit",
	"proxy.connect", "proxy.http", "proxy.block_page", "proxy.pac", "proxy.events", "proxy.auth.realm",
	"proxy.transparent.allow", "proxy.transparent.no_sni", "proxy.transparent.no_sni_groups", "proxy.transparent.ech_names",
	"proxy.inspect.pinned_apps", // read per connection from the engine's config
	"admin.allow", "console.allow", "identity.groups", "identity.signin.allow",
	"identity.ldap", "identity.people", "identity.dhcp_leases", // serve_identity_live.go
	"identity.radius.secret", "identity.radius.nas", "identity.radius.timeout",
	"dns.remote.cert", "dns.remote.key", // serve_devices.go
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
