package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxSecretSize bounds a secret file, so that pointing file: at the wrong
// (large) file fails clearly.
const maxSecretSize = 64 << 10

// String describes where the secret comes from; it never includes the value.
func (s *Secret) String() string {
	switch {
	case s == nil:
		return "no secret"
	case s.File != "" && s.Env == "":
		return "secret file " + s.File
	case s.Env != "" && s.File == "":
		return "secret from $" + s.Env
	}
	return "invalid secret"
}

// Read returns the secret's value: the contents of File without its
// trailing newline, or the value of the environment variable Env. A missing,
// empty or unreadable source is an error. Errors name the source, never the
// value. A secret file other users can read is not an error: see Warning.
func (s *Secret) Read() (string, error) {
	if s == nil {
		return "", errors.New("no secret configured")
	}
	switch {
	case s.File != "" && s.Env != "":
		return "", errors.New(`a secret takes either "file:" or "env:", not both`)
	case s.File != "":
		f, err := os.Open(s.File)
		if err != nil {
			return "", fmt.Errorf("reading secret: %w", err)
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxSecretSize+1))
		if err != nil {
			return "", fmt.Errorf("reading secret file %s: %w", s.File, err)
		}
		if len(b) > maxSecretSize {
			return "", fmt.Errorf("secret file %s is larger than %d bytes", s.File, maxSecretSize)
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			return "", fmt.Errorf("secret file %s is empty", s.File)
		}
		return v, nil
	case s.Env != "":
		v, ok := os.LookupEnv(s.Env)
		if !ok {
			return "", fmt.Errorf("secret environment variable %s is not set", s.Env)
		}
		if v == "" {
			return "", fmt.Errorf("secret environment variable %s is empty", s.Env)
		}
		return v, nil
	}
	return "", errors.New(`a secret needs "file:" or "env:"`)
}

// Warning returns a warning to log if the secret file can be read or
// written by the file's group or by other users (it should be mode 0600,
// owned by the user Gatehouse runs as), and "" otherwise, including when the
// file is missing (Read reports that).
func (s *Secret) Warning() string {
	if s == nil || s.File == "" {
		return ""
	}
	fi, err := os.Stat(s.File)
	if err != nil {
		return ""
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Sprintf("secret file %s can be read or written by other users (mode %04o); run: chmod 600 %s", s.File, perm, s.File)
	}
	return ""
}

// secrets lists every secret in the configuration with its key path.
func (c *Config) secrets() (paths []string, secrets []*Secret) {
	for i := range c.Lists {
		a := c.Lists[i].Auth
		if a == nil {
			continue
		}
		base := joinKey(joinIndex("lists", i), "auth")
		if a.Password != nil {
			paths, secrets = append(paths, joinKey(base, "password")), append(secrets, a.Password)
		}
		if a.Token != nil {
			paths, secrets = append(paths, joinKey(base, "token")), append(secrets, a.Token)
		}
	}
	if r := c.Identity.RADIUS; r.Listen != "" && r.Secret != nil {
		paths, secrets = append(paths, "identity.radius.secret"), append(secrets, r.Secret)
	}
	if l := c.Identity.LDAP; l.URL != "" && l.ServicePassword != nil {
		paths, secrets = append(paths, "identity.ldap.service_password"), append(secrets, l.ServicePassword)
	}
	if si := c.Identity.Signin; si.Listen != "" && si.ClientSecret != nil {
		paths, secrets = append(paths, "identity.signin.client_secret"), append(secrets, si.ClientSecret)
	}
	if o := c.Console.OIDC; o != nil && o.ClientSecret != nil {
		paths, secrets = append(paths, "console.oidc.client_secret"), append(secrets, o.ClientSecret)
	}
	return paths, secrets
}
