// Package devices enrols school devices that are filtered off-site: each
// gets a random token, carried in its DNS-over-HTTPS URL
// (https://HOST/dns-query/<token>) or as the first label of its
// DNS-over-TLS server name (<token>.HOST). The database keeps only the
// token's SHA-256; the resolver keeps the enrolled devices in memory,
// keyed by that hash, and looks a token up without a lock or an
// allocation. See README.md in the repository root ("School devices
// off-site").
package devices

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"sync"
	"sync/atomic"
	"time"
)

// TokenLen is the length of a token: 20 random bytes (160 bits) in
// lower-case base32 without padding, safe in a URL path and as a DNS label.
const TokenLen = 32

var enc = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewToken makes a random token.
func NewToken() (string, error) {
	var b [20]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return enc.EncodeToString(b[:]), nil
}

// ValidToken reports whether t has a token's shape (length and alphabet).
func ValidToken(t string) bool {
	if len(t) != TokenLen {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return false
		}
	}
	return true
}

// Hash is the SHA-256 of a token, as stored.
func Hash(token string) [32]byte {
	var b [TokenLen]byte
	n := copy(b[:], token)
	return sha256.Sum256(b[:n])
}

// Device is an enrolled device. Name, Group and Created do not change;
// the rate-limit bucket is the device's own (so the number of buckets is
// bounded by the number of enrolled devices).
type Device struct {
	Name    string
	Group   string
	Created time.Time

	mu     sync.Mutex
	tokens float64
	last   int64
}

// Allow takes one query from the device's token bucket (qps sustained,
// burst at once); qps 0 is no limit.
func (d *Device) Allow(now time.Time, qps, burst float64) bool {
	if qps <= 0 {
		return true
	}
	n := now.UnixNano()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.last == 0 {
		d.tokens = burst
	} else {
		d.tokens += float64(n-d.last) / 1e9 * qps
	}
	d.tokens = min(d.tokens, burst)
	d.last = n
	if d.tokens >= 1 {
		d.tokens--
		return true
	}
	return false
}

// Registry is the in-memory set of enrolled, unrevoked devices, keyed by
// the SHA-256 of their token. The zero value is empty and ready.
type Registry struct {
	m   atomic.Pointer[map[[32]byte]*Device]
	mu  sync.Mutex // serialises Set
	rev atomic.Int64
}

// Lookup returns the enrolled device of token, or nil for an unknown,
// revoked or malformed token. It takes no lock and does not allocate.
func (r *Registry) Lookup(token string) *Device {
	if r == nil || !ValidToken(token) {
		return nil
	}
	m := r.m.Load()
	if m == nil {
		return nil
	}
	return (*m)[Hash(token)]
}

// Len is the number of enrolled devices held.
func (r *Registry) Len() int {
	if m := r.m.Load(); m != nil {
		return len(*m)
	}
	return 0
}

// Entry is one device row as loaded from the database.
type Entry struct {
	Hash    [32]byte
	Name    string
	Group   string
	Created time.Time
}

// Set replaces the devices at once: a revoked device (one not in es) is
// refused from the moment Set returns. A device kept keeps its rate-limit
// bucket.
func (r *Registry) Set(es []Entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var old map[[32]byte]*Device
	if p := r.m.Load(); p != nil {
		old = *p
	}
	m := make(map[[32]byte]*Device, len(es))
	for _, e := range es {
		if d := old[e.Hash]; d != nil && d.Name == e.Name && d.Group == e.Group {
			m[e.Hash] = d
			continue
		}
		m[e.Hash] = &Device{Name: e.Name, Group: e.Group, Created: e.Created}
	}
	r.m.Store(&m)
}
