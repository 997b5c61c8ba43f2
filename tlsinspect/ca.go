// Package tlsinspect holds the school's own certificate authority and the
// leaf certificates the proxy mints with it to show block pages (and, later,
// inspect traffic) over HTTPS. Nothing here uses goproxy's built-in CA,
// whose key is public.
package tlsinspect

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/gatehouse-filter/gatehouse/internal/atomicfile"
)

// DefaultValidity is the CA's lifetime when ca init is given none: two
// years, as Smoothwall's root (browsers and MDMs accept longer, but a school
// should rehearse renewal).
const DefaultValidity = 2 * 365 * 24 * time.Hour

// CA is the school's certificate authority: its certificate and key.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	DER  []byte // the certificate as DER
}

// InitOptions say what CA to create.
type InitOptions struct {
	Name     string        // common name, e.g. "Our school web filter CA"
	Org      string        // organisation, e.g. the school's name
	Validity time.Duration // DefaultValidity when 0
	Force    bool          // overwrite existing files
	Now      func() time.Time
}

// ErrExists is returned by Init when a CA file is already there and Force
// is not set.
var ErrExists = errors.New("a CA already exists (use --force to replace it; devices trusting the old one must be given the new one)")

// ErrOneFile is returned by Init when the certificate and the key are
// named as one file: the certificate would be written over the key.
var ErrOneFile = errors.New("the CA certificate and key must be two files (ca_cert and ca_key name the same one)")

// samePath reports whether a and b name the same path once made absolute
// and cleaned. (A link to a path is not the same: Init replaces the link
// itself, not the file it points to.)
func samePath(a, b string) bool {
	aa, err1 := filepath.Abs(a)
	ab, err2 := filepath.Abs(b)
	if err1 != nil || err2 != nil {
		return filepath.Clean(a) == filepath.Clean(b)
	}
	return aa == ab
}

// Init creates a new CA (ECDSA P-256) and writes it to certFile (PEM, 0644)
// and keyFile (PKCS#8 PEM, 0600), creating their directories 0700.
func Init(certFile, keyFile string, o InitOptions) (*CA, error) {
	if samePath(certFile, keyFile) {
		return nil, fmt.Errorf("%s: %w", certFile, ErrOneFile)
	}
	if !o.Force {
		for _, f := range []string{certFile, keyFile} {
			if _, err := os.Lstat(f); err == nil {
				return nil, fmt.Errorf("%s: %w", f, ErrExists)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
		}
	}
	if o.Validity <= 0 {
		o.Validity = DefaultValidity
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Name == "" {
		return nil, errors.New("the CA needs a name")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := randSerial()
	if err != nil {
		return nil, err
	}
	now := o.Now()
	skid, err := keyID(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	subject := pkix.Name{CommonName: o.Name}
	if o.Org != "" {
		subject.Organization = []string{o.Org}
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(o.Validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		SubjectKeyId:          skid,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	for _, f := range []string{certFile, keyFile} {
		if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
			return nil, err
		}
	}
	// Key first: a certificate without its key is useless, the reverse is
	// caught by Load.
	if err := atomicfile.Write(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, DER: der}, nil
}

// LoadCert reads only the CA certificate (PEM), for export and health.
func LoadCert(certFile string) (*x509.Certificate, []byte, error) {
	b, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("%s: no PEM CERTIFICATE block", certFile)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", certFile, err)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, nil, fmt.Errorf("%s: not a CA certificate", certFile)
	}
	return cert, blk.Bytes, nil
}

// Load reads a CA written by Init. The key file must not be readable by
// group or others, and must match the certificate.
func Load(certFile, keyFile string) (*CA, error) {
	cert, der, err := LoadCert(certFile)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(keyFile)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s: the CA key is readable by others (mode %04o); chmod 600 it", keyFile, st.Mode().Perm())
	}
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM block", keyFile)
	}
	var key *ecdsa.PrivateKey
	switch blk.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", keyFile, err)
		}
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%s: want an ECDSA key", keyFile)
		}
		key = ek
	case "EC PRIVATE KEY":
		if key, err = x509.ParseECPrivateKey(blk.Bytes); err != nil {
			return nil, fmt.Errorf("%s: %w", keyFile, err)
		}
	default:
		return nil, fmt.Errorf("%s: unexpected PEM block %q", keyFile, blk.Type)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, fmt.Errorf("%s: the key does not match the certificate %s", keyFile, certFile)
	}
	return &CA{Cert: cert, Key: key, DER: der}, nil
}

// PEM returns the certificate as PEM.
func (c *CA) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.DER})
}

// Fingerprint is the certificate's SHA-256, as hex with colons (what
// certificate viewers show).
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	const hexd = "0123456789ABCDEF"
	out := make([]byte, 0, len(sum)*3)
	for i, b := range sum {
		if i > 0 {
			out = append(out, ':')
		}
		out = append(out, hexd[b>>4], hexd[b&15])
	}
	return string(out)
}

func randSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func keyID(pub *ecdsa.PublicKey) ([]byte, error) {
	b, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	return sum[:20], nil
}
