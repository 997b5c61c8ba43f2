package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/acme"
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
	rc, err := newRemoteCert(r, log)
	if err != nil {
		return err
	}
	s.remoteCert = rc
	o.Remote = dnsproxy.RemoteOptions{Host: rc.host, DoHListen: r.DoHListen, DoTListen: r.DoTListen, TLSConfig: rc.tlsConfig(), Devices: reg,
		TokenQPS: r.RateLimit.QPS, TokenBurst: r.RateLimit.Burst, AddrQPS: r.AddressRateLimit.QPS, AddrBurst: r.AddressRateLimit.Burst}
	log.Info("off-site devices enrolled", "devices", reg.Len(), "doh", r.DoHListen, "dot", r.DoTListen)
	return nil
}

// remoteCert is the certificate of the off-site listeners: the configured
// files (kept behind an atomic pointer, so a reload swaps them without
// dropping a connection) and, with acme, HOST's from the ACME CA
// (autocert; never a token name).
type remoteCert struct {
	host   string
	static atomic.Pointer[tls.Certificate] // cert/key; nil without them
	acme   *autocert.Manager               // nil without acme
}

// newRemoteCert loads dns.remote's certificate files and sets up ACME.
func newRemoteCert(r config.DNSRemote, log *slog.Logger) (*remoteCert, error) {
	c := &remoteCert{host: strings.TrimSuffix(strings.ToLower(r.Host), ".")}
	if r.Cert != "" || r.Key != "" {
		kp, err := tls.LoadX509KeyPair(r.Cert, r.Key)
		if err != nil {
			return nil, fmt.Errorf("dns.remote: %w", err)
		}
		c.static.Store(&kp)
	}
	if !r.ACME {
		if c.static.Load() == nil {
			return nil, errors.New("dns.remote: cert and key are needed (or acme: true)")
		}
		return c, nil
	}
	if err := acmeCacheDir(r.ACMECache, log); err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if r.ACMECAFile != "" {
		pool, err := config.LoadCertPool(r.ACMECAFile) // the system roots and the file
		if err != nil {
			return nil, fmt.Errorf("dns.remote.acme_ca_file: %w", err)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	c.acme = &autocert.Manager{Prompt: autocert.AcceptTOS, Cache: autocert.DirCache(r.ACMECache),
		HostPolicy: autocert.HostWhitelist(c.host),
		Client: &acme.Client{DirectoryURL: r.ACMEDirectory, UserAgent: "gatehouse/" + version,
			HTTPClient: &http.Client{Transport: tr, Timeout: time.Minute}}}
	return c, nil
}

// acmeCacheDir makes the ACME cache directory 0700 (it holds the
// account's and the certificate's private keys; autocert writes its
// files 0600), tightening a looser existing one.
func acmeCacheDir(dir string, log *slog.Logger) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("dns.remote.acme_cache: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("dns.remote.acme_cache: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("dns.remote.acme_cache: %s is not a directory", dir)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("dns.remote.acme_cache: %s is readable by others (%v) and cannot be made private: %w", dir, fi.Mode().Perm(), err)
		}
		log.Warn("ACME cache directory was readable by others: made private (0700)", "dir", dir, "was", fi.Mode().Perm().String())
	}
	return nil
}

// tlsConfig is the listeners' TLS configuration (each listener clones it).
func (c *remoteCert) tlsConfig() *tls.Config {
	tc := &tls.Config{GetCertificate: c.getCertificate, MinVersion: tls.VersionTLS12}
	if c.acme != nil {
		// acme-tls/1: the CA's TLS-ALPN-01 challenge (RFC 8737).
		tc.NextProtos = []string{"h2", "http/1.1", acme.ALPNProto}
	}
	return tc
}

func (c *remoteCert) getCertificate(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
	static := c.static.Load()
	if c.acme != nil && (static == nil || strings.EqualFold(strings.TrimSuffix(h.ServerName, "."), c.host)) {
		return c.acme.GetCertificate(h)
	}
	if static == nil {
		return nil, errors.New("dns.remote: no certificate")
	}
	return static, nil // <token>.HOST (and HOST without acme): the configured *.HOST certificate
}

// prepareRemoteCert re-reads dns.remote's certificate files for a reload
// (a certificate renewed at the same path too). The returned func makes
// it the one new handshakes get; connections already open keep theirs.
// A pair that does not load rejects the reload if its paths changed; at
// the same paths the running certificate stays.
func (s *server) prepareRemoteCert(old, cfg *config.Config) (func(), error) {
	rc, r := s.remoteCert, cfg.DNS.Remote
	if rc == nil || !r.Enabled() {
		// Started without dns.remote, or it is being turned off: the
		// listeners stay as they are until a restart (the reload log
		// says it needs one), with the certificate they have.
		return func() {}, nil
	}
	var kp *tls.Certificate
	if r.Cert != "" || r.Key != "" {
		c, err := tls.LoadX509KeyPair(r.Cert, r.Key)
		if err != nil {
			if old.DNS.Remote.Cert == r.Cert && old.DNS.Remote.Key == r.Key {
				// The same files, caught mid-renewal: the running
				// certificate stays, and the reload goes on.
				s.log.Warn("dns.remote.cert could not be read again; the running certificate stays", "part", "dns", "err", err)
				return func() {}, nil
			}
			return nil, fmt.Errorf("dns.remote.cert: %w", err)
		}
		kp = &c
	} else if rc.acme == nil {
		return nil, errors.New("dns.remote.cert: the off-site listeners need a certificate (or acme: true, which takes a restart)")
	}
	return func() {
		old := rc.static.Swap(kp)
		if kp != nil && (old == nil || !bytes.Equal(old.Certificate[0], kp.Certificate[0])) {
			if leaf, err := x509.ParseCertificate(kp.Certificate[0]); err == nil {
				s.log.Info("off-site certificate loaded", "part", "dns", "file", r.Cert, "expires", leaf.NotAfter.UTC().Format(time.RFC3339))
			}
		}
	}, nil
}

// startedWithout reports whether a reload's change at path cannot apply
// because serve started without the part that takes it (dns.remote,
// the RADIUS listener): a restart starts it.
func (s *server) startedWithout(path string) bool {
	switch {
	case strings.HasPrefix(path, "dns.remote."):
		return s.remoteCert == nil
	case strings.HasPrefix(path, "identity.radius."):
		return s.radius == nil
	}
	return false
}

// warm gets HOST's ACME certificate once the listeners are up (from the
// cache, or a new order), so that a problem (port 443 not reaching the
// listener, DNS, the CA) is in the log at start rather than met by the
// first device. autocert renews it from then on.
func (c *remoteCert) warm(log *slog.Logger) {
	if c == nil || c.acme == nil {
		return
	}
	go func() {
		// What a current client offers, so that the ECDSA certificate every
		// device will ask for is the one fetched (else an RSA one would be).
		hello := &tls.ClientHelloInfo{ServerName: c.host,
			CipherSuites:     []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
			SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
			SupportedCurves:  []tls.CurveID{tls.CurveP256}}
		cert, err := c.acme.GetCertificate(hello)
		if err != nil {
			log.Error("ACME: no certificate for the off-site listeners yet (retried at the next device's connection)", "host", c.host, "err", err,
				"check", "the host's public DNS name points at the school, its public port 443 reaches a doh_listen address, and dns.remote.acme_directory is right")
			return
		}
		if cert.Leaf != nil {
			log.Info("ACME certificate ready", "host", c.host, "expires", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
		}
	}()
}
