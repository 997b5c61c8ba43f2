package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writePair writes a self-signed certificate and its key as PEM files.
func writePair(t *testing.T, dir, name string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dns.school.example"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(k)
	cert, key = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600)
	return cert, key
}

// TestLoadCheckedFiles: every file the config names that cannot be read is
// an error at the line of its key; Load (serve) still accepts the file.
func TestLoadCheckedFiles(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ok.txt"), []byte("ok.example\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "empty.txt"), nil, 0o600)
	os.Mkdir(filepath.Join(dir, "adir"), 0o700)
	cert, _ := writePair(t, dir, "a")
	_, otherKey := writePair(t, dir, "b")
	body := `school: {name: Test}
database: ` + dir + `/g.db
dns:
  tls:
    listen: ["127.0.0.1:0"]
    cert: ` + cert + `
    key: ` + otherKey + `
proxy:
  auth:
    users_file: ` + dir + `/nobody-users
lists:
  - name: ok
    path: ` + dir + `/ok.txt
    category: gambling
  - name: gone
    path: ` + dir + `/gone.txt
    category: gambling
  - name: dir
    path: ` + dir + `/adir
    category: gambling
  - name: empty
    path: ` + dir + `/empty.txt
    category: gambling
  - name: tree
    path: ` + dir + `/no-tree
    format: squidguard
`
	path := filepath.Join(dir, "gatehouse.yaml")
	os.WriteFile(path, []byte(body), 0o600)
	if _, err := Load(path); err != nil {
		t.Fatalf("Load (serve) rejects what only config check should: %v", err)
	}
	_, err := LoadChecked(path)
	errs, ok := err.(Errors)
	if !ok {
		t.Fatalf("LoadChecked: %v", err)
	}
	want := []string{
		"gatehouse.yaml:6:11: dns.tls.cert: certificate " + cert + " and key " + otherKey + " cannot be used",
		"gatehouse.yaml:10:17: proxy.auth.users_file: cannot read users file " + dir + "/nobody-users: no such file or directory",
		"gatehouse.yaml:16:11: lists[1].path: cannot read list file " + dir + "/gone.txt: no such file or directory",
		"gatehouse.yaml:19:11: lists[2].path: cannot read list file " + dir + "/adir: it is a directory",
		"gatehouse.yaml:25:11: lists[4].path: cannot read the squidGuard tree " + dir + "/no-tree: no such file or directory",
	}
	if len(errs) != len(want) {
		t.Errorf("%d errors, want %d:\n%v", len(errs), len(want), errs)
	}
	for i, w := range want {
		if i >= len(errs) || !strings.HasPrefix(errs[i].Error(), dir+"/"+w) {
			t.Errorf("error %d: want prefix %q\n%v", i, dir+"/"+w, errs)
		}
	}
}

// TestCheckReadsConsoleOIDCSecret: config check reads the console's
// OpenID client secret file as it does every other secret: one that
// cannot be read is an error at its key, not a console that fails at the
// first sign-in.
func TestCheckReadsConsoleOIDCSecret(t *testing.T) {
	dir := t.TempDir()
	body := `school: {name: Test}
database: ` + dir + `/g.db
console:
  oidc:
    issuer: https://login.example.org/tenant/v2.0
    client_id: console-app
    client_secret: {file: ` + dir + `/no-such-secret}
    redirect_url: https://console.school.example/signin/oidc/callback
    domains: [school.example]
`
	path := filepath.Join(dir, "gatehouse.yaml")
	os.WriteFile(path, []byte(body), 0o600)
	_, err := LoadChecked(path)
	if err == nil || !strings.Contains(err.Error(), "console.oidc.client_secret") || !strings.Contains(err.Error(), "no-such-secret") {
		t.Fatalf("config check with an unreadable console client secret: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "no-such-secret"), []byte("s3cret\n"), 0o600)
	if _, err := LoadChecked(path); err != nil {
		t.Fatalf("with the secret file: %v", err)
	}
}

// TestCheckSchoolCA: once the school's CA exists, config check reports a
// key serve will not use (readable by others, or not the certificate's)
// at proxy.inspect.ca_key; before, the check said "valid" and serve ran
// with decryption and HTTPS block pages off.
func TestCheckSchoolCA(t *testing.T) {
	dir := t.TempDir()
	cert, key := writePair(t, dir, "ca")
	_, otherKey := writePair(t, dir, "other")
	body := func(k string) string {
		return `school: {name: Test}
database: ` + dir + `/g.db
proxy:
  listen: "127.0.0.1:0"
  inspect:
    ca_cert: ` + cert + `
    ca_key: ` + k + `
`
	}
	check := func(k, want string) {
		t.Helper()
		path := filepath.Join(dir, "gatehouse.yaml")
		os.WriteFile(path, []byte(body(k)), 0o600)
		_, err := LoadChecked(path)
		if want == "" {
			if err != nil {
				t.Errorf("a usable CA: %v", err)
			}
			return
		}
		if err == nil || !strings.Contains(err.Error(), "gatehouse.yaml:7:13: proxy.inspect.ca_key: ") || !strings.Contains(err.Error(), want) {
			t.Errorf("key %s: %v, want %q at 7:13", k, err, want)
		}
	}
	check(key, "")
	check(otherKey, "cannot be used together")
	check(filepath.Join(dir, "missing.key"), "cannot be read: no such file")
	os.Chmod(key, 0o640)
	check(key, "can be read by others (mode 0640)")
	// No CA yet (before gatehouse ca init): nothing to check.
	os.Remove(cert)
	os.Chmod(key, 0o600)
	check(filepath.Join(dir, "missing.key"), "")
}
