package signin

import (
	"crypto/tls"
	"os"
	"sync"
	"time"
)

// Cert serves the page's certificate from a PEM pair and loads it again
// when either file changes (a renewal), looking at most once a minute; a
// pair that fails to load keeps the last good one.
type Cert struct {
	CertFile, KeyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	mod     [2]time.Time
	checked time.Time
}

// Load reads the pair; call it before serving.
func (c *Cert) Load() error {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.cert, c.mod, c.checked = &cert, c.modTimes(), time.Now()
	c.mu.Unlock()
	return nil
}

func (c *Cert) modTimes() [2]time.Time {
	var m [2]time.Time
	for i, f := range []string{c.CertFile, c.KeyFile} {
		if fi, err := os.Stat(f); err == nil {
			m[i] = fi.ModTime()
		}
	}
	return m
}

// GetCertificate is for tls.Config.
func (c *Cert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.checked) >= time.Minute {
		c.checked = now
		if m := c.modTimes(); m != c.mod {
			if cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile); err == nil {
				c.cert, c.mod = &cert, m
			}
		}
	}
	return c.cert, nil
}
