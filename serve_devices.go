package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"golang.org/x/crypto/acme/autocert"

	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/devices"
	dnsproxy "github.com/gatehouse-filter/gatehouse/proxy/dns"
)

// remoteDNS sets up the off-site DoH/DoT listeners (dns.remote) on o: the
// enrolled devices are read from the database now and re-read every
// dns.remote.reload, so `gatehouse devices add|revoke` from another
// process counts within that bound.
func (s *server) remoteDNS(ctx context.Context, cfg *config.Config, o *dnsproxy.Options, log *slog.Logger) error {
	r := cfg.DNS.Remote
	if !r.Enabled() {
		return nil
	}
	if s.reports == nil {
		return errors.New("dns.remote: the enrolled devices are in the database, which is not open")
	}
	db := s.reports.Store.DB()
	reg := &devices.Registry{}
	if _, err := reg.Load(ctx, db); err != nil {
		return fmt.Errorf("dns.remote: reading enrolled devices: %w", err)
	}
	go reg.Watch(ctx, db, r.Reload.D(), log)
	tc, err := remoteTLS(r)
	if err != nil {
		return err
	}
	o.Remote = dnsproxy.RemoteOptions{DoHListen: r.DoHListen, DoTListen: r.DoTListen, TLSConfig: tc, Devices: reg,
		TokenQPS: r.RateLimit.QPS, TokenBurst: r.RateLimit.Burst, AddrQPS: r.AddressRateLimit.QPS, AddrBurst: r.AddressRateLimit.Burst}
	log.Info("off-site devices enrolled", "devices", reg.Len(), "doh", r.DoHListen, "dot", r.DoTListen)
	return nil
}

// remoteTLS is the certificate of the off-site listeners: the configured
// one, and with acme HOST's from ACME (autocert; never a token name).
func remoteTLS(r config.DNSRemote) (*tls.Config, error) {
	var static *tls.Certificate
	if r.Cert != "" || r.Key != "" {
		c, err := tls.LoadX509KeyPair(r.Cert, r.Key)
		if err != nil {
			return nil, fmt.Errorf("dns.remote: %w", err)
		}
		static = &c
	}
	if !r.ACME {
		if static == nil {
			return nil, errors.New("dns.remote: cert and key are needed (or acme: true)")
		}
		return &tls.Config{Certificates: []tls.Certificate{*static}, MinVersion: tls.VersionTLS12}, nil
	}
	host := strings.TrimSuffix(strings.ToLower(r.Host), ".")
	m := &autocert.Manager{Prompt: autocert.AcceptTOS, Cache: autocert.DirCache(r.ACMECache), HostPolicy: autocert.HostWhitelist(host)}
	tc := m.TLSConfig()
	tc.MinVersion = tls.VersionTLS12
	if static != nil {
		get := tc.GetCertificate
		tc.GetCertificate = func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if strings.EqualFold(strings.TrimSuffix(h.ServerName, "."), host) {
				return get(h)
			}
			return static, nil // <token>.HOST: the configured *.HOST certificate
		}
	}
	return tc, nil
}
