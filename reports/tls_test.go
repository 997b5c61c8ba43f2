package reports

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"
)

// selfSigned makes a certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

func queueOneAlert(t *testing.T, st *Store, p Parts) {
	t.Helper()
	w, _ := NewWriter(st, p.Options)
	w.Record(ev(time.Now().UTC(), "10.0.0.5", "students", "tor", "tor.example"))
	w.Close()
	if n, err := NewAlerter(st, p.Options, p.Roles, p.School, p.Loc, nil).Check(context.Background()); n != 1 || err != nil {
		t.Fatal(n, err)
	}
}

// TestSTARTTLSRequired: by default mail is only sent over STARTTLS; a
// server that does not offer it gets nothing (the message waits), one that
// does gets the message encrypted.
func TestSTARTTLSRequired(t *testing.T) {
	srv := newTestSMTP(t) // no TLS
	st := openTemp(t)
	mc := srv.mailConfig(t.TempDir())
	mc.TLS = "starttls"
	p := testParts(t, mc, nil)
	queueOneAlert(t, st, p)
	m := NewMailer(st, mc, nil, nil)
	m.DeliverDue(context.Background())
	if len(srv.messages()) != 0 {
		t.Fatal("mail sent without STARTTLS")
	}
	var lastErr string
	st.db.QueryRow(`SELECT last_error FROM outbox`).Scan(&lastErr)
	if n, _ := m.Pending(); n != 1 || !strings.Contains(strings.ToLower(lastErr), "tls") {
		t.Errorf("pending %d, last error %q", n, lastErr)
	}

	// The same message goes once the server offers STARTTLS.
	cert, pool := selfSigned(t)
	srv.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	mc.TLSConfig = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	st.db.Exec(`UPDATE outbox SET next_ts = 0`)
	NewMailer(st, mc, nil, nil).DeliverDue(context.Background())
	srv.wait(t, 1, 10*time.Second)
}
