package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/internal/lograte"
	"github.com/gatehouse-filter/gatehouse/internal/peraddr"
)

// blockPagePort is where browsers sent to the block-page address arrive
// (tests move it off the privileged port).
var blockPagePort = 80

// startBlockPage serves the block page on port 80 of the address the DNS
// resolver answers for blocked names (dns.block_response: blockpage), so
// the page is there when a browser follows the answer. Only clients.allow
// are answered. Nothing is started when the admin listener is already
// that port, or with dns.block_page_http: false (config validation then
// requires it to be).
func (s *server) startBlockPage(ctx context.Context, cfg *config.Config) error {
	if cfg.DNS.BlockResponse != "blockpage" || !cfg.DNS.BlockPageHTTP || s.proxy == nil {
		return nil
	}
	ip, ok := cfg.BlockPageAddr()
	if !ok || (blockPagePort == 80 && cfg.AdminServesBlockPage(ip)) || s.transparentServes(0, ip, blockPagePort) {
		return nil
	}
	addr := net.JoinHostPort(ip.String(), strconv.Itoa(blockPagePort))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("block page listener (dns.block_page_http) on %s: %w", addr, err)
	}
	page := s.proxy.AdminHandler()
	srv := &http.Server{Handler: s.clientsOnly(page), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 30 * time.Second, MaxHeaderBytes: 16 << 10}
	serveUntil(ctx, srv, limitPageConns(ln, cfg), s.log, "block page listener")
	s.log.Info("block page listening", "addr", ln.Addr().String())
	return nil
}

// Pupils' browsers reach the admin listener (PAC file, block page,
// "report a mistake") and the block-page address's ports 80 and 443
// directly, not through the proxy's connection caps, so each of these
// listeners bounds its own, with the proxy's limits
// (proxy.limits.connections and per_client, 20,000 and 2,000 by default:
// a school behind one NAT address, and a page with dozens of blocked hosts
// sent to the block-page address, open many): more than the total wait in
// the kernel's accept queue, more from one address are closed at once, so
// one device cannot take them all; each with headers of at most 16 KiB.
// The console's listener (staff) has consoleMaxConns and
// consoleMaxConnsPerAddr.
const (
	consoleMaxConns        = 4096
	consoleMaxConnsPerAddr = 256
)

// limitPageConns bounds a page listener with the proxy's limits in cfg.
func limitPageConns(ln net.Listener, cfg *config.Config) net.Listener {
	return peraddr.Limit(ln, cfg.Proxy.Limits.Connections, cfg.Proxy.Limits.PerClient)
}

// clientsOnly serves h to clients.allow (read per request, so a reload
// applies at once); anyone else gets 403 and nothing more.
func (s *server) clientsOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !clientAllowed(s.engine.Load().Config().Clients.Allow, remoteAddr(r)) {
			http.Error(w, "Forbidden", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// serveUntil serves srv on ln (TLS when srv.TLSConfig is set) until ctx
// ends, then shuts it down, letting requests in flight finish (5 s).
func serveUntil(ctx context.Context, srv *http.Server, ln net.Listener, log *slog.Logger, what string) {
	if srv.ErrorLog == nil { // not net/http's default, a line per failed handshake to the standard logger
		srv.ErrorLog = lograte.ServerLog(log.With("listener", what), slog.LevelWarn, 10*time.Second)
	}
	go func() {
		var err error
		if srv.TLSConfig != nil {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(what+" stopped", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
}

// remoteAddr is a request's client address (invalid if unparsable).
func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
