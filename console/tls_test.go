package console

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSelfSigned(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "console-cert.pem"), filepath.Join(dir, "console-key.pem")
	c1, err := SelfSigned(cert, key, []string{"10.0.0.2", "gatehouse.school.example"}, start)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{cert, key} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v, want 0600", p, fi.Mode(), err)
		}
	}
	x, err := x509.ParseCertificate(c1.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(x.IPAddresses) != 1 || x.IPAddresses[0].String() != "10.0.0.2" || len(x.DNSNames) != 1 || !x.NotAfter.After(start.AddDate(1, 11, 0)) {
		t.Fatalf("certificate: ips %v names %v until %v", x.IPAddresses, x.DNSNames, x.NotAfter)
	}
	// Kept: the second start loads the same certificate.
	c2, err := SelfSigned(cert, key, nil, start)
	if err != nil || string(c2.Certificate[0]) != string(c1.Certificate[0]) {
		t.Fatalf("second start made a new certificate (%v)", err)
	}
	// Half a pair is an error, not silently replaced.
	os.Remove(key)
	if _, err := SelfSigned(cert, key, nil, start); err == nil || !strings.Contains(err.Error(), "without the other") {
		t.Fatalf("half a pair: %v", err)
	}
}
