package tlsinspect

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

func newCA(t testing.TB) (*CA, string, string) {
	t.Helper()
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "ca", "ca.pem"), filepath.Join(dir, "ca", "ca.key")
	ca, err := Init(cf, kf, InitOptions{Name: "Test School web filter CA", Org: "Test School"})
	if err != nil {
		t.Fatal(err)
	}
	return ca, cf, kf
}

func TestInitFilesAndModes(t *testing.T) {
	ca, cf, kf := newCA(t)
	for f, want := range map[string]os.FileMode{kf: 0o600, cf: 0o644, filepath.Dir(kf): 0o700} {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %04o, want %04o", f, st.Mode().Perm(), want)
		}
	}
	if !ca.Cert.IsCA || ca.Cert.Subject.CommonName != "Test School web filter CA" || ca.Cert.Subject.Organization[0] != "Test School" {
		t.Errorf("certificate: %+v", ca.Cert.Subject)
	}
	if ca.Cert.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("key algorithm %v", ca.Cert.PublicKeyAlgorithm)
	}
	if d := ca.Cert.NotAfter.Sub(ca.Cert.NotBefore); d < DefaultValidity || d > DefaultValidity+2*time.Hour {
		t.Errorf("validity %v", d)
	}
	got, err := Load(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Cert.Equal(ca.Cert) {
		t.Error("loaded certificate differs")
	}
}

func TestInitRefusesOverwrite(t *testing.T) {
	ca, cf, kf := newCA(t)
	if _, err := Init(cf, kf, InitOptions{Name: "Other"}); !errors.Is(err, ErrExists) {
		t.Fatalf("second init: %v, want ErrExists", err)
	}
	still, err := Load(cf, kf)
	if err != nil || !still.Cert.Equal(ca.Cert) {
		t.Fatalf("the CA changed after a refused init: %v", err)
	}
	again, err := Init(cf, kf, InitOptions{Name: "Other", Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if again.Cert.Equal(ca.Cert) {
		t.Error("--force did not replace the CA")
	}
}

// TestInitRefusesOneFileForBoth: a certificate and key named as one path
// (spelt the same or another way) had the certificate written over the
// key: init reported the CA made while its key was gone. It is refused,
// and nothing is written.
func TestInitRefusesOneFileForBoth(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "ca.pem")
	for _, key := range []string{f, filepath.Join(dir, "sub", "..", "ca.pem")} {
		_, err := Init(f, key, InitOptions{Name: "One file CA", Force: true})
		if err == nil {
			_, lerr := Load(f, key)
			t.Errorf("init %s %s: made a CA (which then loads: %v)", f, key, lerr)
		}
		if _, err := os.Stat(f); err == nil {
			t.Errorf("init %s %s wrote a file", f, key)
		}
		_ = os.Remove(f)
	}
}

func TestLoadRejects(t *testing.T) {
	_, cf, kf := newCA(t)
	_, cf2, kf2 := newCA(t)
	if _, err := Load(cf, kf2); err == nil {
		t.Error("a key from another CA was accepted")
	}
	if err := os.Chmod(kf, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(cf, kf); err == nil {
		t.Error("a world-readable key was accepted")
	}
	if err := os.WriteFile(cf2, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(cf2, kf2); err == nil {
		t.Error("garbage certificate accepted")
	}
}

func verify(t *testing.T, ca *CA, m *Minter, host string) {
	t.Helper()
	c, err := m.Get(host)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: normalise(host), Roots: pool}); err != nil {
		t.Errorf("%s: %v", host, err)
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d != LeafValidity+LeafBackdate {
		t.Errorf("%s: validity %v", host, d)
	}
}

func TestLeafVerifies(t *testing.T) {
	ca, _, _ := newCA(t)
	m, err := NewMinter(ca, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"blocked.example", "WWW.Blocked.Example.", "192.0.2.7", "[2001:db8::1]"} {
		verify(t, ca, m, h)
	}
	c1, _ := m.Get("a.example")
	c2, _ := m.Get("b.example")
	if c1.PrivateKey != c2.PrivateKey {
		t.Error("leaves do not share one key")
	}
}

func TestConcurrentFirstRequestsMintOnce(t *testing.T) {
	ca, _, _ := newCA(t)
	m, err := NewMinter(ca, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if _, err := m.Get("once.example"); err != nil {
				t.Error(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if n := m.Mints(); n != 1 {
		t.Fatalf("100 concurrent first requests minted %d leaves, want 1", n)
	}
}

func TestCacheBoundAndRenewal(t *testing.T) {
	ca, _, _ := newCA(t)
	now := time.Now()
	m, err := NewMinter(ca, 3, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := m.Get("h" + strconv.Itoa(i) + ".example"); err != nil {
			t.Fatal(err)
		}
	}
	if m.Len() != 3 {
		t.Fatalf("cache holds %d, want its bound 3", m.Len())
	}
	// h4 is cached, h0 was evicted.
	m.Get("h4.example")
	if m.Mints() != 5 {
		t.Fatalf("cache hit minted: %d", m.Mints())
	}
	m.Get("h0.example")
	if m.Mints() != 6 {
		t.Fatalf("evicted host not re-minted: %d", m.Mints())
	}
	// Near expiry, a cached leaf is replaced.
	now = now.Add(LeafValidity - LeafRenew + time.Minute)
	m.Get("h4.example")
	if m.Mints() != 7 {
		t.Fatalf("leaf near expiry not re-minted: %d", m.Mints())
	}
}

func BenchmarkMint(b *testing.B) {
	ca, _, _ := newCA(b)
	m, err := NewMinter(ca, 0, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	now := time.Now()
	for b.Loop() {
		if _, _, err := m.mint("bench.example", now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCacheHit(b *testing.B) {
	ca, _, _ := newCA(b)
	m, err := NewMinter(ca, 0, nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := m.Get("bench.example"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Get("bench.example"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCache10k mints 10,000 leaves and reports the heap they hold.
func BenchmarkCache10k(b *testing.B) {
	ca, _, _ := newCA(b)
	var m *Minter
	var before, after runtime.MemStats
	for b.Loop() {
		m = nil
		runtime.GC()
		runtime.ReadMemStats(&before)
		var err error
		m, err = NewMinter(ca, 0, nil)
		if err != nil {
			b.Fatal(err)
		}
		for i := range DefaultCacheSize {
			if _, err := m.Get("h" + strconv.Itoa(i) + ".example"); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
	}
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MiB-held")
	runtime.KeepAlive(m)
}

// Many new hosts at once are minted at most cap(sem) at a time.
func TestMintConcurrencyBounded(t *testing.T) {
	ca, _, _ := newCA(t)
	m, err := NewMinter(ca, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.sem = make(chan struct{}, 1) // whatever the machine's CPUs
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := m.Get("n" + strconv.Itoa(i) + ".example"); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if m.Mints() != 50 || m.maxMinting.Load() != 1 {
		t.Fatalf("%d mints, at most %d at once; want 50, 1", m.Mints(), m.maxMinting.Load())
	}
}

// A leaf never outlives the CA that signed it.
func TestLeafNotAfterCA(t *testing.T) {
	dir := t.TempDir()
	ca, err := Init(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key"), InitOptions{Name: "Short CA", Validity: 3 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMinter(ca, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.Get("short.example")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if leaf.NotAfter.After(ca.Cert.NotAfter) {
		t.Errorf("leaf valid until %v, after its CA (%v)", leaf.NotAfter, ca.Cert.NotAfter)
	}
}

// TestLeafCachedInCAsLastDay: a leaf capped at its CA's end cannot be
// minted any longer, so within the CA's last day (and after it) the cached
// one is kept: before, every handshake minted a new leaf (a signature each,
// queued behind the mint limit) for as long as the CA was not replaced.
func TestLeafCachedInCAsLastDay(t *testing.T) {
	dir := t.TempDir()
	ca, err := Init(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key"), InitOptions{Name: "Last day CA", Validity: 12 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	m, err := NewMinter(ca, 0, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := m.Get("last.example"); err != nil {
			t.Fatal(err)
		}
	}
	now = ca.Cert.NotAfter.Add(time.Hour) // expired: a new leaf would be no better
	if _, err := m.Get("last.example"); err != nil {
		t.Fatal(err)
	}
	if n := m.Mints(); n != 1 {
		t.Errorf("%d leaves minted for one host in the CA's last day, want 1", n)
	}
}
