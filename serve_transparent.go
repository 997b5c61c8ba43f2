package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/gatehouse-filter/gatehouse/config"
	httpproxy "github.com/gatehouse-filter/gatehouse/proxy/http"
)

// startTransparent starts the transparent listeners (proxy.transparent) on
// the proxy p: port-80 and port-443 traffic the school's firewall
// redirects to Gatehouse. A listener that cannot be bound stops serve, as
// the proxy's own does: IT asked for it. They are stopped by the proxy's
// Shutdown.
func (s *server) startTransparent(p *httpproxy.Server, cfg *config.Config, log *slog.Logger) error {
	t := cfg.Proxy.Transparent
	for i, l := range []struct {
		addr, what string
		serve      func(net.Listener) error
	}{
		{t.HTTPListen, "transparent HTTP", p.ServeTransparentHTTP},
		{t.HTTPSListen, "transparent HTTPS", p.ServeTransparentTLS},
	} {
		if l.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			return fmt.Errorf("%s listener (proxy.transparent): %w", l.what, err)
		}
		p.AddOwnListener(ln.Addr()) // never dialled, from before the first client
		s.tpAddrs[i] = ln.Addr()
		go func() {
			if err := l.serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
				log.Error(l.what+" listener stopped", "err", err)
			}
		}()
		log.Info(l.what+" listening", "addr", ln.Addr().String())
	}
	return nil
}

// transparentServes reports whether the transparent listener i (0: HTTP,
// 1: HTTPS) is bound to port of ip (or of every address): then it serves
// the browsers the DNS block-page answer sends there, and the block-page
// listener for that port is not started.
func (s *server) transparentServes(i int, ip netip.Addr, port int) bool {
	a, ok := s.tpAddrs[i].(*net.TCPAddr)
	if !ok || a.Port != port {
		return false
	}
	la, _ := netip.AddrFromSlice(a.IP)
	return la.IsUnspecified() || la.Unmap() == ip
}
