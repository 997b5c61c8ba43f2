package httpproxy

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/identity"
	"github.com/gatehouse-filter/gatehouse/identity/ldaptest"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// sendLogin writes a GET through the proxy on c with a Basic login and
// returns the status, or 0 if no answer came.
func sendLogin(e *env, c net.Conn, user, pass string) int {
	code, _ := sendLoginBody(e, c, user, pass)
	return code
}

func sendLoginBody(e *env, c net.Conn, user, pass string) (int, string) {
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: site.test\r\nProxy-Authorization: Basic %s\r\n\r\n", e.originURL("site.test", "/"), auth)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
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

// TestProxyLoginGuessesPerAccountLimited: a guesser spreading his tries
// at one teacher's account over several addresses (his devices, the
// classroom's computers, an IPv6 device's privacy addresses) gets at most
// maxAccountFailures checks a minute for that account, not 10 per
// address; further logins for it are refused unchecked, so the
// directory's own lockout is never reached. The teacher is not locked
// out: a password that passed before, and the address the teacher is
// logged in at, are still answered.
func TestProxyLoginGuessesPerAccountLimited(t *testing.T) {
	e := newEnv(t, envOpts{perClient: 100})
	// The teacher logs in at 127.0.0.9 before the guessing.
	if code := sendLogin(e, e.dial("127.0.0.9"), "jsmith", password); code != http.StatusOK {
		t.Fatalf("teacher's login: %d", code)
	}
	// A guess answered "not right" was checked; one refused unchecked
	// says there were too many.
	checked := 0
	guess := func(src, pass string) {
		t.Helper()
		code, body := sendLoginBody(e, e.dial(src), "jsmith", pass)
		if code != http.StatusProxyAuthRequired {
			t.Fatalf("guess from %s: %d", src, code)
		}
		if strings.Contains(body, "not right") {
			checked++
		}
	}
	const addrs = 6
	for a := range addrs {
		for i := range maxLoginFailures {
			guess(fmt.Sprintf("127.0.1.%d", a+1), fmt.Sprint("guess ", a, i))
		}
	}
	if checked > maxAccountFailures {
		t.Errorf("%d guesses at one account from %d addresses were checked, want at most %d", checked, addrs, maxAccountFailures)
	}
	// A guess from a new address is refused unchecked while the
	// account's minute lasts.
	checked = 0
	guess("127.0.2.1", "another guess")
	if checked != 0 {
		t.Error("a guess at a limited account was checked")
	}
	// The teacher's browser still gets through.
	if code := sendLogin(e, e.dial("127.0.0.9"), "jsmith", password); code != http.StatusOK {
		t.Errorf("the teacher during the guessing: %d, want 200", code)
	}
}

// TestProxyLDAPGuessesPerAccountLimited: the same against the directory:
// guesses at a teacher's account from several addresses reach the
// directory at most maxAccountFailures times; the teacher's own computer
// is still checked (a login the cache no longer answers binds again),
// a new address is refused without a bind, and another user is not
// affected.
func TestProxyLDAPGuessesPerAccountLimited(t *testing.T) {
	e, l, _, _ := ldapEnv(t)
	l.TTL = 0 // nothing is answered from the cache: every login binds
	if code := sendLogin(e, e.dial("127.0.0.3"), "mr.jones", "Jones-pw-2"); code != http.StatusOK {
		t.Fatalf("teacher's login: %d", code)
	}
	binds := l.Binds()
	for a := range 4 {
		for i := range maxLoginFailures {
			src := fmt.Sprintf("127.0.1.%d", a+1)
			if code := sendLogin(e, e.dial(src), "mr.jones", fmt.Sprint("guess ", a, i)); code != http.StatusProxyAuthRequired {
				t.Fatalf("guess from %s: %d", src, code)
			}
		}
	}
	// Each checked login is two binds (the service account, the user).
	if n := (l.Binds() - binds) / 2; n > maxAccountFailures {
		t.Errorf("%d guesses at one account reached the directory, want at most %d", n, maxAccountFailures)
	}
	binds = l.Binds()
	if code := sendLogin(e, e.dial("127.0.2.1"), "Mr.Jones", "Jones-pw-2"); code != http.StatusProxyAuthRequired {
		t.Errorf("the account from a new address: %d, want 407", code)
	}
	if l.Binds() != binds {
		t.Error("a limited account's login reached the directory")
	}
	if code := sendLogin(e, e.dial("127.0.0.3"), "mr.jones", "Jones-pw-2"); code != http.StatusOK {
		t.Errorf("the teacher's own computer: %d, want 200", code)
	}
	if code := sendLogin(e, e.dial("127.0.2.1"), "amira.khan", "Amira-pw-1"); code != http.StatusOK {
		t.Errorf("another user: %d, want 200", code)
	}
}

// TestLoginGroupFollowsLoginOnSharedAddress: on an address several people
// use at once (a terminal server, a NAT'd classroom), each request is
// decided by the group of the login it carries. A pupil whose group the
// directory decides keeps it on her decrypted connection after a
// teacher logs in from the same address: she is not given the address's
// network group (here the staff network's) because the identity table
// now names the teacher there.
func TestLoginGroupFollowsLoginOnSharedAddress(t *testing.T) {
	srv := ldaptest.Start(t)
	l := &identity.LDAP{
		URL: srv.LDAPSURL, RootCAs: srv.CA, BaseDN: "ou=people," + ldaptest.Base, UserFilter: "(uid=%s)",
		ServiceDN: ldaptest.ServiceDN, ServicePassword: ldaptest.ServicePass,
		Groups:      []identity.LDAPGroup{{DN: ldaptest.StaffDN, Group: "staff"}, {DN: ldaptest.StudentsDN, Group: "students"}},
		DisplayAttr: "displayName", TTL: 10 * time.Minute, Timeout: 5 * time.Second,
	}
	tb := identity.New(identity.Options{Directory: l})
	ie := newInspectEnvOpts(t, envOpts{identity: tb, directory: l})
	ie.setDecrypt(config.DecryptAll, "site.test/secret") // students: one page denied
	const at = "127.0.0.2"                               // the staff network's, with proxy_login
	client := func(user, pass string) *http.Client {
		tr := &http.Transport{
			Proxy:           http.ProxyURL(&url.URL{Scheme: "http", Host: ie.addr, User: url.UserPassword(user, pass)}),
			DialContext:     (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(at)}, Timeout: 2 * time.Second}).DialContext,
			TLSClientConfig: &tls.Config{RootCAs: ie.school},
		}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: browser{tr}, Timeout: 5 * time.Second}
	}
	amira := client("amira.khan", "Amira-pw-1")
	if resp, _ := get(t, amira, ie.url("site.test", "/secret/1")); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("the pupil's denied page: %d", resp.StatusCode)
	}
	jones := client("mr.jones", "Jones-pw-2")
	if resp, _ := get(t, jones, ie.url("site.test", "/secret/2")); resp.StatusCode != http.StatusOK {
		t.Fatalf("the teacher: %d", resp.StatusCode)
	}
	u := ie.url("site.test", "/secret/3")
	if resp, _ := get(t, amira, u); resp.StatusCode != http.StatusForbidden {
		t.Errorf("the pupil after a teacher logged in from her address: %d, want 403", resp.StatusCode)
	}
	ev := ie.sink.waitEvent(t, func(ev reports.Event) bool { return ev.URL == u })
	if ev.User != "amira.khan" || ev.Group != "students" {
		t.Errorf("event: user %q group %q, want amira.khan in students", ev.User, ev.Group)
	}
}

// TestProxyLDAPRememberedWhileBusy: when the directory's checks are all
// taken (a flood of logins, or a directory that does not answer, each
// bind waiting for its timeout), a login the directory's cache remembers
// still gets through: it needs no bind, so it waits for none. A login
// that needs a bind gets 503.
func TestProxyLDAPRememberedWhileBusy(t *testing.T) {
	e, l, _, _ := ldapEnv(t)
	if code := sendLogin(e, e.dial("127.0.0.2"), "amira.khan", "Amira-pw-1"); code != http.StatusOK {
		t.Fatalf("first login: %d", code)
	}
	e.s.dirCap.waiting.Store(dirWorkers + dirQueue)
	defer e.s.dirCap.waiting.Store(0)
	binds := l.Binds()
	if code := sendLogin(e, e.dial("127.0.0.2"), "amira.khan", "Amira-pw-1"); code != http.StatusOK {
		t.Errorf("a remembered login while the directory's checks are taken: %d, want 200", code)
	}
	if code := sendLogin(e, e.dial("127.0.0.3"), "mr.jones", "Jones-pw-2"); code != http.StatusServiceUnavailable {
		t.Errorf("a login needing a bind while the checks are taken: %d, want 503", code)
	}
	if code := sendLogin(e, e.dial("127.0.0.4"), "amira.khan", "wrong"); code != http.StatusServiceUnavailable {
		t.Errorf("a wrong password for a remembered user while the checks are taken: %d, want 503", code)
	}
	if l.Binds() != binds {
		t.Error("the directory was asked while its checks were taken")
	}
}
