package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
)

// LoadChecked is Load plus a check that every file the configuration names
// can be read: local list files and squidGuard trees, the proxy's users
// file, the DNS-over-TLS certificate and key (and that they pair), and
// secret files. Problems are reported as errors at the line of the key
// naming the file. `gatehouse config check` uses it; serve does not, since
// a list file that is missing at start-up leaves that list out (reported
// by /healthz) rather than stopping filtering altogether.
func LoadChecked(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, readError(path, err)
	}
	return parse(data, path, true)
}

// files reports files that cannot be read. Paths relative to the working
// directory are checked from the working directory, as serve reads them.
func (v *validator) files() {
	for i := range v.c.Lists {
		l := &v.c.Lists[i]
		p := strings.TrimSpace(l.Path)
		if p == "" {
			continue
		}
		if strings.EqualFold(l.Format, "squidguard") {
			if _, err := os.ReadDir(p); err != nil {
				v.errf(joinKey(joinIndex("lists", i), "path"), "cannot read the squidGuard tree %s: %s", p, fileErr(err))
			}
			continue
		}
		v.readable(joinKey(joinIndex("lists", i), "path"), p, "list file")
	}
	if p := strings.TrimSpace(v.c.Proxy.Auth.UsersFile); p != "" && v.c.Proxy.Listen != "" {
		v.readable("proxy.auth.users_file", p, "users file")
	}
	if cc := v.c.Console; !v.c.ConsoleOff() && cc.Cert != "" && cc.Key != "" {
		if v.readable("console.cert", cc.Cert, "certificate") && v.readable("console.key", cc.Key, "key") {
			if _, err := tls.LoadX509KeyPair(cc.Cert, cc.Key); err != nil {
				v.errf("console.cert", "certificate %s and key %s cannot be used: %v", cc.Cert, cc.Key, err)
			}
		}
	}
	t := v.c.DNS.TLS
	if len(t.Listen) > 0 && t.Cert != "" && t.Key != "" {
		certOK := v.readable("dns.tls.cert", t.Cert, "certificate")
		keyOK := v.readable("dns.tls.key", t.Key, "key")
		if certOK && keyOK {
			if _, err := tls.LoadX509KeyPair(t.Cert, t.Key); err != nil {
				v.errf("dns.tls.cert", "certificate %s and key %s cannot be used: %v", t.Cert, t.Key, err)
			}
		}
	}
	v.schoolCA()
	paths, secrets := v.c.secrets()
	if s := v.c.Reports.SMTP.Password; s != nil && strings.TrimSpace(v.c.Reports.SMTP.Host) != "" {
		paths, secrets = append(paths, "reports.smtp.password"), append(secrets, s)
	}
	for i, s := range secrets {
		if s.File == "" || s.Env != "" {
			continue // environment variables are set where serve runs, maybe not here
		}
		if _, err := s.Read(); err != nil {
			v.errf(joinKey(paths[i], "file"), "%v", err)
		}
	}
}

// schoolCA checks the school's CA once it exists (before `gatehouse ca
// init` there is nothing to check): serve will not use a key that group
// or others can read, or that is not the certificate's, and then
// decrypts nothing and shows no HTTPS block page, which IT would
// otherwise learn only from /healthz.
func (v *validator) schoolCA() {
	certFile, keyFile := v.c.CACertFile(), v.c.CAKeyFile()
	if _, err := os.Stat(certFile); err != nil {
		return
	}
	at := "proxy.inspect.ca_key"
	if v.c.Proxy.Inspect.CAKey == "" {
		at = "proxy.inspect"
	}
	fi, err := os.Stat(keyFile)
	if err != nil {
		v.errf(at, "the school's CA %s exists but its key %s cannot be read: %s", certFile, keyFile, fileErr(err))
		return
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		v.errf(at, "the school's CA key %s can be read by others (mode %04o), so serve will not use it: nothing would be decrypted and HTTPS block pages would be off; chmod 600 it", keyFile, perm)
		return
	}
	if !v.readable(at, keyFile, "the school's CA key") || !v.readable(at, certFile, "the school's CA certificate") {
		return
	}
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		v.errf(at, "the school's CA %s and key %s cannot be used together: %v", certFile, keyFile, err)
	}
}

// readable reports (and returns false) when path is not a readable file.
func (v *validator) readable(at, path, what string) bool {
	f, err := os.Open(path)
	if err == nil {
		_, err = f.Read(make([]byte, 1))
		f.Close()
		if errors.Is(err, io.EOF) {
			err = nil // empty: readable (an empty list is allowed)
		}
	}
	if err != nil {
		v.errf(at, "cannot read %s %s: %s", what, path, fileErr(err))
		return false
	}
	return true
}

// fileErr says why a file cannot be read, without repeating its path.
func fileErr(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "no such file or directory"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied (Gatehouse must be able to read it)"
	}
	if strings.Contains(err.Error(), "is a directory") {
		return "it is a directory (a squidGuard tree needs format: squidguard)"
	}
	return fmt.Sprint(err)
}
