package httpproxy

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/gatehouse-filter/gatehouse/config"
)

// countingSite is an origin that counts connections opened and closed.
type countingSite struct {
	base           string
	opened, closed atomic.Int32
}

func (e *env) countingSites(n int) []*countingSite {
	e.t.Helper()
	var sites []*countingSite
	for i := range n {
		cs := &countingSite{}
		o := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = fmt.Fprintf(w, "site %d", i)
		}))
		o.Config.ConnState = func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				cs.opened.Add(1)
			case http.StateClosed, http.StateHijacked:
				cs.closed.Add(1)
			}
		}
		o.Start()
		e.t.Cleanup(o.Close)
		name := fmt.Sprintf("site%d.test", i)
		e.res.mu.Lock()
		e.res.names[name] = e.res.names["site.test"]
		e.res.mu.Unlock()
		_, port, _ := net.SplitHostPort(o.Listener.Addr().String())
		e.allowPort(port)
		cs.base = "http://" + name + ":" + port
		sites = append(sites, cs)
	}
	return sites
}

// eventually waits (at most 5 s) for cond: a wait, not a timing
// assertion.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
	}
}

// The pool holds at most proxy.limits.idle_total idle connections over
// all sites; making room closes the least recently used.
func TestUpstreamPoolIdleTotal(t *testing.T) {
	e := newEnv(t, envOpts{idleTotal: 3})
	sites := e.countingSites(4)
	c := e.client("", "", "")
	for i, s := range sites {
		if resp, body := get(t, c, s.base+"/"); resp.StatusCode != 200 || body != fmt.Sprintf("site %d", i) {
			t.Fatalf("site %d: %d %q", i, resp.StatusCode, body)
		}
	}
	eventually(t, "site 0's idle connection closed", func() bool { return sites[0].closed.Load() == 1 })
	if n := e.s.up.idleCount(); n != 3 {
		t.Fatalf("%d idle connections, want 3", n)
	}
	// Site 0 needs a new connection; putting it back evicts site 1's, the
	// least recently used now. Site 3's is reused.
	get(t, c, sites[0].base+"/")
	get(t, c, sites[3].base+"/")
	eventually(t, "site 1's idle connection closed", func() bool { return sites[1].closed.Load() == 1 })
	for i, want := range []int32{2, 1, 1, 1} {
		if n := sites[i].opened.Load(); n != want {
			t.Errorf("site %d: %d connections opened, want %d", i, n, want)
		}
	}
	if sites[2].closed.Load() != 0 || sites[3].closed.Load() != 0 {
		t.Error("a more recently used connection was closed")
	}
	if n := e.s.up.idleCount(); n != 3 {
		t.Errorf("%d idle connections, want 3", n)
	}
	e.s.up.mu.Lock()
	n := e.s.up.nIdle
	e.s.up.mu.Unlock()
	if n != 3 {
		t.Errorf("nIdle = %d, want 3", n)
	}
}

// Requests through net/http's Transport (here POSTs) keep at most
// idle_total idle connections too.
func TestTransportIdleTotal(t *testing.T) {
	e := newEnv(t, envOpts{idleTotal: 3})
	sites := e.countingSites(5)
	c := e.client("", "", "")
	for i, s := range sites {
		resp, err := c.Post(s.base+"/", "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("site %d: %d", i, resp.StatusCode)
		}
	}
	open := func() (n int32) {
		for _, s := range sites {
			n += s.opened.Load() - s.closed.Load()
		}
		return n
	}
	eventually(t, "3 connections left open", func() bool { return open() == 3 })
	if sites[0].closed.Load() != 1 || sites[1].closed.Load() != 1 {
		t.Errorf("closed: %d %d %d %d %d, want the two least recently used", sites[0].closed.Load(), sites[1].closed.Load(),
			sites[2].closed.Load(), sites[3].closed.Load(), sites[4].closed.Load())
	}
}

// At most bcryptWorkers bcrypt checks run at once and bcryptQueue wait;
// the rest are answered ErrBusy at once. Counted, not timed: the checks
// are held at a gate until the refusals are all in.
func TestUsersBcryptBound(t *testing.T) {
	u := testUsers(t)
	gate := make(chan struct{})
	var running, most atomic.Int32
	u.compare = func(hash, pw []byte) error {
		n := running.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		<-gate
		running.Add(-1)
		return bcrypt.CompareHashAndPassword(hash, pw)
	}
	const attempts = 200
	var busy, wrong atomic.Int32
	var wg sync.WaitGroup
	for i := range attempts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := u.Verify("jsmith", fmt.Sprint("guess ", i))
			switch {
			case errors.Is(err, ErrBusy):
				busy.Add(1)
			case !ok:
				wrong.Add(1)
			}
		}()
	}
	eventually(t, "the refusals", func() bool {
		return busy.Load()+u.limit.waiting.Load() == attempts && running.Load() == bcryptWorkers
	})
	if got := busy.Load(); got != attempts-bcryptWorkers-bcryptQueue {
		t.Fatalf("%d attempts refused, want %d", got, attempts-bcryptWorkers-bcryptQueue)
	}
	close(gate)
	wg.Wait()
	if most.Load() != bcryptWorkers {
		t.Errorf("%d bcrypt checks ran at once, want %d", most.Load(), bcryptWorkers)
	}
	if b, w := busy.Load(), wrong.Load(); b+w != attempts || w != bcryptWorkers+bcryptQueue || u.limit.waiting.Load() != 0 {
		t.Errorf("busy %d + wrong %d != %d; still waiting %d", b, w, attempts, u.limit.waiting.Load())
	}
	// A password that passed bcrypt once is checked without it.
	if ok, err := u.Verify("jsmith", password); !ok || err != nil {
		t.Fatalf("right password: %v %v", ok, err)
	}
	u.compare = func([]byte, []byte) error { t.Error("bcrypt ran for a remembered password"); return errors.New("no") }
	if ok, err := u.Verify("jsmith", password); !ok || err != nil {
		t.Errorf("remembered password: %v %v", ok, err)
	}
}

// A login that finds the bcrypt queue full gets 503 with Retry-After.
func TestProxyLoginBusy(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.s.users.limit.waiting.Store(bcryptWorkers + bcryptQueue)
	c := e.dial("127.0.0.2")
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	auth := base64.StdEncoding.EncodeToString([]byte("jsmith:" + password))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: site.test\r\nProxy-Authorization: Basic %s\r\n\r\n", e.originURL("site.test", "/"), auth)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	e.s.users.limit.waiting.Store(0)
	if resp, _ := get(t, e.client("127.0.0.2", "jsmith", password), e.originURL("site.test", "/")); resp.StatusCode != 200 {
		t.Fatalf("after the queue drained: %d", resp.StatusCode)
	}
	if e.hits.Load() != 1 {
		t.Errorf("origin hits %d, want 1", e.hits.Load())
	}
}

func testUsers(t *testing.T) *Users {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte("jsmith:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	u, err := LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestLoginsBounded: one person's credentials sent from ever new source
// addresses (an IPv6 device's can be any in its /64) must not grow the
// remembered logins past their bound within login_ttl; the newest login
// is still answered.
func TestLoginsBounded(t *testing.T) {
	now := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	l := NewLogins(8*time.Hour, func() time.Time { return now })
	l.max = 64
	base := netip.MustParseAddr("fd00::").As16()
	var last netip.Addr
	for i := range 4 * l.max {
		a := base
		a[14], a[15] = byte(i>>8), byte(i)
		last = netip.AddrFrom16(a)
		if !l.Set(last, "amy") {
			t.Fatalf("address %d's first login was not recorded", i)
		}
	}
	l.mu.RLock()
	n := len(l.m)
	l.mu.RUnlock()
	if n > l.max {
		t.Fatalf("%d addresses remembered, want at most %d", n, l.max)
	}
	if u := l.UserFor(last); u != "amy" {
		t.Fatalf("the newest login answers %q", u)
	}
}

// TestLoginLastsWhileUsed: a login names its address for login_ttl (by
// default 30 minutes) after the last request that carried it, not from
// the first: a teacher browsing all afternoon stays named, and the pupil
// who sits at the shared PC after them is not taken for the teacher (nor
// given the staff group) for the rest of a school day.
func TestLoginLastsWhileUsed(t *testing.T) {
	now := time.Date(2026, 12, 7, 13, 0, 0, 0, time.UTC)
	l := NewLogins(config.Default().Proxy.Auth.LoginTTL.D(), func() time.Time { return now })
	pc := netip.MustParseAddr("10.1.2.3")
	l.Set(pc, "teacher")
	for range 12 { // two hours of browsing, a request every ten minutes
		now = now.Add(10 * time.Minute)
		if u := l.UserFor(pc); u != "teacher" {
			t.Fatalf("at %s, while the teacher browses: %q", now.Format("15:04"), u)
		}
		l.Set(pc, "teacher")
	}
	now = now.Add(29 * time.Minute)
	if u := l.UserFor(pc); u != "teacher" {
		t.Fatalf("29 minutes after the last request: %q", u)
	}
	now = now.Add(2 * time.Minute)
	if u := l.UserFor(pc); u != "" {
		t.Errorf("31 minutes after the teacher's last request the address is still theirs: %q", u)
	}
}
