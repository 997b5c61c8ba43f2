package httpproxy

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// sendLogin writes a GET through the proxy on c with a Basic login and
// returns the status, or 0 if no answer came.
func sendLogin(e *env, c net.Conn, user, pass string) int {
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: site.test\r\nProxy-Authorization: Basic %s\r\n\r\n", e.originURL("site.test", "/"), auth)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestProxyLoginGuessesAtOnceLimited: a guesser who sends many wrong
// logins at once from one address (one connection each, as a script
// does) gets no more checks than maxLoginFailures, as one sending them
// one after another does: the checks under way count against the
// address's budget, not only those already answered. Counted, not timed:
// bcrypt is held at a gate until every login has been answered or is
// waiting for it.
func TestProxyLoginGuessesAtOnceLimited(t *testing.T) {
	e := newEnv(t, envOpts{perClient: 100})
	u := e.s.users
	gate := make(chan struct{})
	var checks atomic.Int32
	u.compare = func(hash, pw []byte) error {
		checks.Add(1)
		<-gate
		return bcrypt.CompareHashAndPassword(hash, pw)
	}
	const attempts = 40
	conns := make([]net.Conn, attempts)
	for i := range conns {
		conns[i] = e.dial("127.0.0.2")
	}
	var answered atomic.Int32
	codes := make([]int, attempts)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = sendLogin(e, c, "jsmith", fmt.Sprint("guess ", i))
			answered.Add(1)
		}()
	}
	eventually(t, "every guess answered or waiting for bcrypt", func() bool {
		return answered.Load()+u.limit.waiting.Load() == attempts
	})
	close(gate)
	wg.Wait()
	if n := checks.Load(); n > maxLoginFailures {
		t.Errorf("%d guesses sent at once from one address were checked, want at most %d", n, maxLoginFailures)
	}
	for i, code := range codes {
		if code == http.StatusOK || code == 0 {
			t.Errorf("guess %d: status %d", i, code)
		}
	}
	// The address has had its ten: the right password is refused unchecked.
	u.compare = bcrypt.CompareHashAndPassword
	before := checks.Load()
	if code := sendLogin(e, e.dial("127.0.0.2"), "jsmith", password); code != http.StatusProxyAuthRequired {
		t.Errorf("after the guesses: %d, want 407", code)
	}
	if checks.Load() != before {
		t.Error("a blocked address's login was checked")
	}
	// Another address is not affected.
	if code := sendLogin(e, e.dial("127.0.0.3"), "jsmith", password); code != http.StatusOK {
		t.Errorf("another address: %d", code)
	}
}
