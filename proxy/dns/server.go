package dns

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/gatehouse-filter/gatehouse/internal/peraddr"
)

// Server is the filtering resolver.
type Server struct {
	opts        Options
	tokenHost   string                 // dns.remote.host, lower case: <token>.tokenHost is a DoT name (remote.go, serveTokenName)
	access      atomic.Pointer[access] // ACL and rate limit (acl.go)
	accessMu    sync.Mutex             // serialises SetAccess
	cache       *cache
	blockTmpls  atomic.Pointer[blockTemplates] // packed block answers without name
	blockTmplMu sync.Mutex
	ups         *Upstreams
	metrics     *metrics
	events      *events
	eventsGauge atomic.Pointer[events] // events, for the pending gauge (read by a scrape while Start runs)
	tunnel      *tunnels               // DNS tunnel detection (tunnel.go)
	safeAnswers safeAnswers            // safe-search endpoints' answers, unpacked once (handler.go)
	names       *nameTable             // recent question names (parse.go)
	flight      flight
	bufs        sync.Pool

	mu       sync.Mutex
	servers  []*mdns.Server
	remote   *remote        // off-site DoH/DoT (remote.go); nil: none
	udp      []*udpListener // UDP sockets served by our own workers (udp.go)
	addrs    []net.Addr
	inflight atomic.Int64 // queries being answered
	waiting  atomic.Int64 // queries and prefetches waiting on upstreams (startWait)
	bg       sync.WaitGroup
	cancel   context.CancelFunc
	shutOnce sync.Once
}

// New builds a server; Start opens its listeners.
func New(o Options) (*Server, error) {
	o.defaults()
	if o.Engine == nil {
		return nil, errors.New("dns: no policy engine")
	}
	if o.Upstreams == nil {
		return nil, errors.New("dns: no upstreams")
	}
	switch o.BlockResponse {
	case BlockNXDomain, BlockNull, BlockBlockPage:
	default:
		return nil, fmt.Errorf("dns: unknown block response %q", o.BlockResponse)
	}
	s := &Server{opts: o, ups: o.Upstreams, tokenHost: strings.TrimSuffix(strings.ToLower(o.Remote.Host), ".")}
	s.SetAccess(o.ACL, o.RateQPS, o.RateBurst)
	s.cache = newCache(o.Cache)
	s.names = newNameTable()
	s.metrics = newMetrics(o.Registry, s.cache.len, func() int { return s.eventsGauge.Load().len() })
	s.ups.metrics = s.metrics
	s.tunnel = newTunnels(o.Tunnel, o.Registry)
	s.bufs.New = func() any { b := make([]byte, 0, 1232); return &b }
	s.flight.calls = map[cacheKey]*call{}
	return s, nil
}

// Start listens on UDP and TCP for every Listen address, and DoT for
// every TLSListen address. It returns once all are bound.
func (s *Server) Start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	s.events = newEvents(s.opts.Sink, s.opts.Queue, s.opts.Collapse, s.metrics, s.opts.Log)
	s.eventsGauge.Store(s.events)
	for _, a := range s.opts.Listen {
		pc, ln, err := listenBoth(a, s.udpSockets() > 1 || s.udpBlocking())
		if err != nil {
			s.Shutdown(context.Background())
			return err
		}
		if uc, ok := pc.(*net.UDPConn); ok && !s.opts.MiekgUDP {
			if ls, err := s.serveUDPAddr(uc); err != nil {
				pc.Close()
				ln.Close()
				s.Shutdown(context.Background())
				return err
			} else if ls != nil {
				s.mu.Lock()
				s.udp = append(s.udp, ls...)
				s.addrs = append(s.addrs, pc.LocalAddr())
				s.mu.Unlock()
				pc = nil
			}
		}
		if pc != nil {
			s.add(&mdns.Server{PacketConn: pc, Handler: protoHandler{s, "udp"}, UDPSize: EDNSSize}, pc.LocalAddr())
		}
		s.add(&mdns.Server{Listener: s.onSiteTCP(ln), Handler: protoHandler{s, "tcp"}, ReadTimeout: 5 * time.Second, IdleTimeout: func() time.Duration { return 10 * time.Second }}, ln.Addr())
	}
	for _, a := range s.opts.TLSListen {
		if s.opts.TLSConfig == nil {
			s.Shutdown(context.Background())
			return errors.New("dns: DoT listener without a certificate")
		}
		raw, err := net.Listen("tcp", a)
		if err != nil {
			s.Shutdown(context.Background())
			return fmt.Errorf("dns listener dot %s: %w", a, err)
		}
		ln := tls.NewListener(s.onSiteTCP(raw), s.opts.TLSConfig)
		s.add(&mdns.Server{Listener: ln, Net: "tcp-tls", Handler: protoHandler{s, "dot"}, ReadTimeout: 5 * time.Second,
			IdleTimeout: func() time.Duration { return 10 * time.Second }}, ln.Addr())
	}
	if err := s.startRemote(); err != nil {
		s.Shutdown(context.Background())
		return err
	}
	s.mu.Lock()
	servers := append([]*mdns.Server(nil), s.servers...)
	s.mu.Unlock()
	for _, srv := range servers {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() {
			if err := srv.ActivateAndServe(); err != nil {
				s.opts.Log.Error("dns listener stopped", "err", err)
			}
		}()
		<-started
	}
	s.bg.Add(1)
	go func() { defer s.bg.Done(); s.ups.HealthCheck(ctx, s.opts.healthInterval()) }()
	s.opts.Log.Info("dns listening", "addrs", s.Addrs())
	return nil
}

func (o *Options) healthInterval() time.Duration { return o.HealthCheck }

func (s *Server) add(srv *mdns.Server, a net.Addr) {
	s.mu.Lock()
	s.servers = append(s.servers, srv)
	s.addrs = append(s.addrs, a)
	s.mu.Unlock()
}

// Addrs lists the bound addresses (UDP, TCP, DoT), e.g. for tests that
// listen on port 0.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]net.Addr(nil), s.addrs...)
}

// Shutdown lets in-flight queries finish (until ctx ends), closes the
// listeners and flushes pending events to the sink.
func (s *Server) Shutdown(ctx context.Context) {
	s.shutOnce.Do(func() { s.shutdown(ctx) })
}

func (s *Server) shutdown(ctx context.Context) {
	for s.inflight.Load() > 0 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	s.mu.Lock()
	servers, udp := s.servers, s.udp
	s.servers, s.udp = nil, nil
	s.mu.Unlock()
	for _, l := range udp {
		l.close()
	}
	if s.remote != nil {
		s.remote.shutdown(ctx)
	}
	for _, srv := range servers {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		if err := srv.ShutdownContext(sctx); err != nil && srv.PacketConn != nil {
			_ = srv.PacketConn.Close()
		}
		cancel()
	}
	if s.cancel != nil {
		s.cancel()
	}
	s.bg.Wait()
	s.events.close()
}

// flight de-duplicates identical concurrent upstream queries.
type flight struct {
	mu    sync.Mutex
	calls map[cacheKey]*call
}

type call struct {
	done chan struct{}
	e    *entry
	err  error
	dups int // queries that joined it (f.mu held)
}

func (f *flight) do(k cacheKey, fn func() (*entry, error)) (*entry, error) {
	f.mu.Lock()
	if c := f.calls[k]; c != nil {
		c.dups++
		f.mu.Unlock()
		<-c.done
		return c.e, c.err
	}
	c := &call{done: make(chan struct{})}
	f.calls[k] = c
	f.mu.Unlock()
	defer func() {
		v := recover()
		if v != nil {
			c.e, c.err = nil, fmt.Errorf("dns: resolving %s panicked: %v", k.name, v)
		}
		f.mu.Lock()
		delete(f.calls, k)
		f.mu.Unlock()
		close(c.done) // the queries sharing the call get the error, never hang
		if v != nil {
			panic(v) // on to the query's own recover (Server.finish), which logs it
		}
	}()
	c.e, c.err = fn()
	return c.e, c.err
}

// DNS over TCP and DoT hold a goroutine and buffers per connection, for
// as long as the client keeps asking (idle 10 s between queries). Each
// TCP and DoT listener holds at most tcpMaxConns connections (more wait
// in the kernel's accept queue) and tcpMaxConnsPerAddr from one address
// (more are closed at once, so one device cannot take them all); a
// connection from an address clients.allow does not serve is closed as
// it is accepted on an on-site listener (aclListener), so it takes neither.
const (
	tcpMaxConns        = 4096
	tcpMaxConnsPerAddr = 256
)

func limitTCP(ln net.Listener) net.Listener {
	return peraddr.Limit(ln, tcpMaxConns, tcpMaxConnsPerAddr)
}

// onSiteTCP is limitTCP for an on-site listener, which serves only
// clients.allow (the off-site ones serve any address: remote.go).
func (s *Server) onSiteTCP(ln net.Listener) net.Listener {
	return limitTCP(aclListener{Listener: ln, s: s})
}

// listenBoth binds UDP and TCP on the same address. With port 0 it retries
// until both get the same free port.
func listenBoth(a string, reuse bool) (net.PacketConn, net.Listener, error) {
	_, port, _ := net.SplitHostPort(a)
	lc := net.ListenConfig{}
	if reuse {
		lc.Control = reusePort
	}
	for try := 0; ; try++ {
		pc, err := lc.ListenPacket(context.Background(), "udp", a)
		if err != nil {
			return nil, nil, fmt.Errorf("dns listener udp %s: %w", a, err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if port != "0" || try >= 20 {
			return nil, nil, fmt.Errorf("dns listener tcp %s: %w", a, err)
		}
	}
}
