package httpproxy

import (
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Clients that keep failing the TLS handshake with the school's leaf for a
// host (an app that pins its certificates, or a device without the
// school's CA) are remembered: IT hears of it once per hold, and with
// proxy.inspect.pinned_apps: tunnel the host is tunnelled for them for a
// while instead of failing again and again (decideConnect).
const (
	pinFailures  = 3                // failures within pinWindow that make a host held
	pinWindow    = 10 * time.Minute // from the first counted failure
	pinHold      = 6 * time.Hour    // how long a held host is tunnelled for the client (and not reported again)
	pinClients   = 4096             // clients remembered at once
	pinPerClient = 32               // hosts remembered per client
)

// pinTracker is the bounded per-client map of failed handshakes. At most
// pinClients clients with at most pinPerClient hosts each (about 100
// bytes an entry: under 15 MiB full). Past the first bound, entries no
// longer counting or held are swept (at most once a minute) and, if none
// are, a new client's failures are not remembered (its handshakes keep
// failing, each costing it a round trip, not the proxy more memory); past
// the second, the client's oldest host is forgotten.
type pinTracker struct {
	mu      sync.Mutex
	clients map[netip.Addr][]pinEntry
	swept   time.Time // the last sweep: at most one a minute
}

type pinEntry struct {
	host  string
	n     int       // failures counted in the window
	first time.Time // the window's start
	until time.Time // held (tunnelled) until then; zero while counting
}

func newPinTracker() *pinTracker { return &pinTracker{clients: map[netip.Addr][]pinEntry{}} }

// live reports whether e still matters at now.
func (e *pinEntry) live(now time.Time) bool {
	if !e.until.IsZero() {
		return now.Before(e.until)
	}
	return now.Sub(e.first) < pinWindow
}

// held reports whether host is tunnelled for client because of earlier
// failures.
func (p *pinTracker) held(client netip.Addr, host string, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.clients[client] {
		if e.host == host {
			return !e.until.IsZero() && now.Before(e.until)
		}
	}
	return false
}

// fail counts a failed handshake; it reports true once, when host becomes
// held for client.
func (p *pinTracker) fail(client netip.Addr, host string, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	list, ok := p.clients[client]
	if !ok && len(p.clients) >= pinClients {
		if now.Sub(p.swept) < time.Minute {
			return false
		}
		p.swept = now
		p.sweep(now)
		if len(p.clients) >= pinClients {
			return false
		}
	}
	for i := range list {
		e := &list[i]
		if e.host != host {
			continue
		}
		if !e.live(now) {
			*e = pinEntry{host: host, first: now}
		}
		if !e.until.IsZero() {
			return false // held already
		}
		if e.n++; e.n >= pinFailures {
			e.until = now.Add(pinHold)
			return true
		}
		return false
	}
	if len(list) >= pinPerClient {
		oldest := 0
		for i := range list {
			if list[i].first.Before(list[oldest].first) {
				oldest = i
			}
		}
		list = append(list[:oldest], list[oldest+1:]...)
	}
	p.clients[client] = append(list, pinEntry{host: strings.Clone(host), n: 1, first: now}) // not the request head's (reqread.go)
	return false
}

// sweep drops entries that no longer matter.
func (p *pinTracker) sweep(now time.Time) {
	for c, list := range p.clients {
		kept := list[:0]
		for _, e := range list {
			if e.live(now) {
				kept = append(kept, e)
			}
		}
		if len(kept) == 0 {
			delete(p.clients, c)
		} else {
			p.clients[c] = kept
		}
	}
}

// size is the number of clients and entries remembered (tests).
func (p *pinTracker) size() (clients, entries int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.clients {
		entries += len(l)
	}
	return len(p.clients), entries
}
