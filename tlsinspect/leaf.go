package tlsinspect

import (
	"container/list"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Leaf certificate settings.
const (
	// LeafValidity is how long a minted leaf is valid. Short, so a leaf
	// copied off the server is of little use; a cached one is re-minted when
	// less than LeafRenew is left.
	LeafValidity = 7 * 24 * time.Hour
	LeafBackdate = time.Hour // for clients whose clocks run a little slow
	LeafRenew    = 24 * time.Hour
	// DefaultCacheSize bounds the leaf cache; past it the least recently
	// used leaf is dropped (and minted again if asked for).
	DefaultCacheSize = 10000
)

// Minter mints leaf certificates for host names and addresses, signed by the
// CA, all with one shared P-256 key, and keeps the most recently used in a
// bounded cache. Concurrent first requests for a host mint once.
type Minter struct {
	ca   *CA
	key  *ecdsa.PrivateKey
	max  int
	now  func() time.Time
	akid []byte

	mu       sync.Mutex
	lru      *list.List // of *entry, front = most recent
	byHost   map[string]*list.Element
	inflight map[string]*call

	mints atomic.Int64
	// sem caps concurrent mints (signatures) at half the CPUs, at least
	// one: a client asking for many new hosts at once can keep at most
	// that share of the machine busy; the rest wait (within the
	// handshake timeout).
	sem                 chan struct{}
	minting, maxMinting atomic.Int32
}

type entry struct {
	host     string
	cert     *tls.Certificate
	notAfter time.Time
}

type call struct {
	done chan struct{}
	cert *tls.Certificate
	err  error
}

// NewMinter returns a minter for ca holding at most size leaves
// (DefaultCacheSize when size <= 0). now is the clock (time.Now if nil).
func NewMinter(ca *CA, size int, now func() time.Time) (*Minter, error) {
	if ca == nil || ca.Key == nil {
		return nil, errors.New("tlsinspect: a CA with its key is required")
	}
	if size <= 0 {
		size = DefaultCacheSize
	}
	if now == nil {
		now = time.Now
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	akid := ca.Cert.SubjectKeyId
	return &Minter{
		ca: ca, key: key, max: size, now: now, akid: akid,
		lru: list.New(), byHost: make(map[string]*list.Element), inflight: make(map[string]*call),
		sem: make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2)),
	}, nil
}

// Mints reports how many leaves have been minted (for tests and metrics).
func (m *Minter) Mints() int64 { return m.mints.Load() }

// Len reports how many leaves the cache holds.
func (m *Minter) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lru.Len()
}

// Cap is the cache's bound.
func (m *Minter) Cap() int { return m.max }

// Get returns a leaf for host (a DNS name or an IP literal, as the client
// asked for it), minting it on first use or when it nears expiry (unless
// it already ends with the CA).
func (m *Minter) Get(host string) (*tls.Certificate, error) {
	host = normalise(host)
	if host == "" {
		return nil, errors.New("tlsinspect: empty host")
	}
	now := m.now()
	m.mu.Lock()
	if el, ok := m.byHost[host]; ok {
		e := el.Value.(*entry)
		// Fresh while more than LeafRenew is left, or while it lasts as
		// long as its CA (a new one could last no longer: in the CA's
		// last day, and after it, every handshake would mint).
		if e.notAfter.Sub(now) > LeafRenew || !e.notAfter.Before(m.ca.Cert.NotAfter) {
			m.lru.MoveToFront(el)
			m.mu.Unlock()
			return e.cert, nil
		}
	}
	if c, ok := m.inflight[host]; ok {
		m.mu.Unlock()
		<-c.done
		return c.cert, c.err
	}
	c := &call{done: make(chan struct{})}
	m.inflight[host] = c
	m.mu.Unlock()

	var notAfter time.Time
	c.cert, notAfter, c.err = m.mint(host, now)

	m.mu.Lock()
	delete(m.inflight, host)
	if c.err == nil {
		m.put(host, c.cert, notAfter)
	}
	m.mu.Unlock()
	close(c.done)
	return c.cert, c.err
}

// put stores a leaf, dropping the least recently used past the bound.
// m.mu is held.
func (m *Minter) put(host string, cert *tls.Certificate, notAfter time.Time) {
	if el, ok := m.byHost[host]; ok {
		e := el.Value.(*entry)
		e.cert, e.notAfter = cert, notAfter
		m.lru.MoveToFront(el)
		return
	}
	m.byHost[host] = m.lru.PushFront(&entry{host: host, cert: cert, notAfter: notAfter})
	for m.lru.Len() > m.max {
		old := m.lru.Back()
		m.lru.Remove(old)
		delete(m.byHost, old.Value.(*entry).host)
	}
}

func (m *Minter) mint(host string, now time.Time) (*tls.Certificate, time.Time, error) {
	m.sem <- struct{}{}
	defer func() { <-m.sem }()
	n := m.minting.Add(1)
	defer m.minting.Add(-1)
	for {
		old := m.maxMinting.Load()
		if n <= old || m.maxMinting.CompareAndSwap(old, n) {
			break
		}
	}
	serial, err := randSerial()
	if err != nil {
		return nil, time.Time{}, err
	}
	// A leaf never outlives its CA.
	notAfter := now.Add(LeafValidity)
	if notAfter.After(m.ca.Cert.NotAfter) {
		notAfter = m.ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:   serial,
		Subject:        pkix.Name{CommonName: host},
		NotBefore:      now.Add(-LeafBackdate),
		NotAfter:       notAfter,
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		AuthorityKeyId: m.akid,
	}
	if a, err := netip.ParseAddr(host); err == nil {
		tmpl.IPAddresses = append(tmpl.IPAddresses, a.AsSlice())
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, m.ca.Cert, &m.key.PublicKey, m.ca.Key)
	if err != nil {
		return nil, time.Time{}, err
	}
	m.mints.Add(1)
	// Leaf is left nil: the DER is all a handshake needs, and a parsed
	// certificate would triple each cache entry's size.
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: m.key}, notAfter, nil
}

// normalise lower-cases a name, drops a trailing dot and IPv6 brackets and
// zones, and writes an IPv4-mapped address as IPv4.
func normalise(host string) string {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if maybeIP(host) {
		if a, err := netip.ParseAddr(host); err == nil {
			return a.WithZone("").Unmap().String()
		}
	}
	return strings.TrimSuffix(strings.ToLower(host), ".")
}

// maybeIP reports whether host could be an IP literal (a name's last label
// is never all digits), so a cache hit for a name allocates nothing.
func maybeIP(host string) bool {
	return host != "" && (strings.IndexByte(host, ':') >= 0 || host[len(host)-1] >= '0' && host[len(host)-1] <= '9')
}
