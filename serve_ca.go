package main

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"io/fs"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/tlsinspect"
)

// loadCA loads the school's CA for the proxy, if `gatehouse ca init` has
// made one: nil without a CA (nothing is decrypted). A CA that exists but
// cannot be loaded is logged and reported by the health check, and the
// proxy runs without decryption (blocked HTTPS sites get a refused
// CONNECT, as before): filtering never stops for it. The CA's files and
// leaf_cache are read at start; changing them needs a restart.
func (s *server) loadCA(cfg *config.Config, log *slog.Logger) *tlsinspect.Minter {
	if _, _, err := tlsinspect.LoadCert(cfg.CACertFile()); errors.Is(err, fs.ErrNotExist) {
		log.Info("no school CA (gatehouse ca init): HTTPS is not decrypted", "ca_cert", cfg.CACertFile())
		return nil
	}
	ca, err := tlsinspect.Load(cfg.CACertFile(), cfg.CAKeyFile())
	if err == nil {
		var m *tlsinspect.Minter
		if m, err = tlsinspect.NewMinter(ca, cfg.Proxy.Inspect.LeafCache, nil); err == nil {
			log.Info("school CA loaded: blocked HTTPS sites get the block page on devices that trust it",
				"ca", ca.Cert.Subject.CommonName, "expires", ca.Cert.NotAfter.Format(time.DateOnly), "leaf_cache", m.Cap())
			s.minter = m
			return m
		}
	}
	s.caErr = err
	log.Error("the school CA could not be loaded; HTTPS is not decrypted", "err", err)
	return nil
}

// caHandler serves /ca.pem, /ca.crt and /ca on the admin listener.
func (s *server) caHandler() http.Handler {
	cfg := func() *config.Config { return s.engine.Load().Config() }
	return tlsinspect.Handler(func() string { return cfg().CACertFile() }, func() string { return cfg().School.Name })
}

// blockPageTLSPort is where browsers following a block-page DNS answer to
// an https:// address arrive (tests move it off the privileged port).
var blockPageTLSPort = 443

// startBlockPageTLS serves the block page over HTTPS on port 443 of the
// block-page address (dns.block_response: blockpage with block_page_http),
// once the school's CA is loaded: the handshake gets a leaf minted for the
// ClientHello's name, but only for a client in clients.allow whose group
// does not have decrypt: off, and only for a name the policy blocks for
// that client, by the name itself or by its DNS answer (a CNAME target or
// an address on an IP list: the DNS answered those with the block-page
// address too); anything else fails the handshake (as if nothing
// listened). With a transparent HTTPS listener on that port it is not
// started: the transparent listener serves those connections.
// A port it cannot bind is logged, not fatal: the plain-HTTP page and the
// DNS answers work without it.
func (s *server) startBlockPageTLS(ctx context.Context, cfg *config.Config) {
	if s.minter == nil || s.proxy == nil || cfg.DNS.BlockResponse != "blockpage" || !cfg.DNS.BlockPageHTTP {
		return
	}
	ip, ok := cfg.BlockPageAddr()
	if !ok || s.transparentServes(1, ip, blockPageTLSPort) {
		return
	}
	addr := net.JoinHostPort(ip.String(), strconv.Itoa(blockPageTLSPort))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		s.log.Error("HTTPS block page listener not started; blocked https:// sites show a browser error", "addr", addr, "err", err)
		return
	}
	m, p := s.minter, s.proxy
	tcfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			var client netip.Addr
			if ap, err := netip.ParseAddrPort(hello.Conn.RemoteAddr().String()); err == nil {
				client = ap.Addr().Unmap()
			}
			eng := s.engine.Load()
			cfg := eng.Config()
			if !clientAllowed(cfg.Clients.Allow, client) {
				return nil, errors.New("client not allowed")
			}
			if hello.ServerName == "" {
				return nil, errors.New("no server name")
			}
			host, err := bl.NormalizeHost(hello.ServerName)
			if err != nil {
				return nil, err
			}
			req := p.WhoRequest(client) // the login or the identity table's user, as the resolver decided
			req.Host = host
			d := eng.Decide(req)
			if g := cfg.Groups[d.Group]; g == nil || g.DecryptMode() == config.DecryptOff || cfg.NeverDecrypt(host) {
				return nil, errors.New("the client's group does not decrypt this name")
			}
			// A name the DNS blocked by its answer (a CNAME target or an
			// address on an IP list) was sent here too.
			if !s.proxy.LookupBlocked(hello.Context(), client, host, &d) {
				return nil, errors.New("not a blocked name for this client")
			}
			return m.Get(host)
		},
	}
	srv := &http.Server{Handler: s.clientsOnly(s.proxy.AdminHandler()), TLSConfig: tcfg, ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout: 30 * time.Second, MaxHeaderBytes: 16 << 10, ErrorLog: log.New(io.Discard, "", 0)}
	serveUntil(ctx, srv, limitPageConns(ln, cfg), s.log, "HTTPS block page listener")
	s.log.Info("HTTPS block page listening", "addr", ln.Addr().String())
}
