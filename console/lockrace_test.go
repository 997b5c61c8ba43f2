package console

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// TestLockoutHoldsUnderParallelGuesses: the limit of 5 failed sign-ins
// per account holds for guesses sent at once. Before, each request read
// the count, spent tens of milliseconds on argon2, and only then counted
// its failure, so 40 guesses sent together were all checked (40 password
// guesses a window instead of 5, and as many for the 6-digit code).
func TestLockoutHoldsUnderParallelGuesses(t *testing.T) {
	r := newRig(t, false)
	secret := r.add("dsl@school.example", RoleDSL, goodPass, true)
	const n = 40
	guess := func(path string, form func(i int) url.Values, c func(i int) *http.Client) (checked int) {
		var wg sync.WaitGroup
		status := make([]int, n)
		for i := range n {
			wg.Go(func() {
				req, _ := http.NewRequest("POST", r.http.URL+path, strings.NewReader(form(i).Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				resp, err := c(i).Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				status[i] = resp.StatusCode
			})
		}
		wg.Wait()
		for _, s := range status {
			if s == http.StatusUnauthorized {
				checked++
			} else if s != http.StatusTooManyRequests && s != http.StatusOK {
				t.Fatalf("status %d", s)
			}
		}
		return checked
	}
	pw := func(i int) url.Values {
		return url.Values{"email": {"dsl@school.example"}, "password": {"wrong guess number " + string(rune('a'+i))}}
	}
	shared := r.client()
	if got := guess("/signin", pw, func(int) *http.Client { return shared }); got > DefaultAccountFailures {
		t.Fatalf("%d password guesses checked at once, limit %d", got, DefaultAccountFailures)
	}
	// The code stage: a fresh window, a session at the code page, and
	// many codes sent at once.
	r.clock.Add(DefaultFailureWindow)
	c := r.client()
	p := r.post(c, "/signin", url.Values{"email": {"dsl@school.example"}, "password": {goodPass}})
	tok := csrf(t, p.body)
	good, _ := TOTPCode(secret, r.clock.Now())
	code := func(i int) url.Values {
		v := string(rune('0'+i%10)) + "0000" + string(rune('0'+i/10))
		if v == good {
			v = "999999"
		}
		return url.Values{"code": {v}, "csrf": {tok}}
	}
	if got := guess("/signin/code", code, func(int) *http.Client { return c }); got > DefaultAccountFailures {
		t.Fatalf("%d codes checked at once, limit %d", got, DefaultAccountFailures)
	}
}
