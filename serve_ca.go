package main

import (
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

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
