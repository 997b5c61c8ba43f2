package console

import (
	"testing"
	"time"
)

// TestAbandonedSessionsSwept: a session whose browser never came back (the
// tab closed, the laptop handed in) ended only when its cookie was next
// presented, so its row (the account, the address it signed in from and
// when) was kept for good. Sessions past their limits are deleted at the
// next sign-in by anyone, and when the console starts.
func TestAbandonedSessionsSwept(t *testing.T) {
	r := newRig(t, false)
	r.add("dsl@school.example", RoleAuditor, goodPass, false)
	r.add("head@school.example", RoleAuditor, goodPass+" two", false)
	if p := r.signIn(r.client(), "dsl@school.example", goodPass, ""); p.status != 200 || p.url != "/" {
		t.Fatalf("sign-in: %d at %s", p.status, p.url)
	}
	if n := r.sessions(); n != 1 {
		t.Fatalf("%d sessions, want 1", n)
	}
	r.clock.Add(DefaultAbsolute + time.Hour) // the first browser never comes back
	if p := r.signIn(r.client(), "head@school.example", goodPass+" two", ""); p.status != 200 || p.url != "/" {
		t.Fatalf("second sign-in: %d at %s", p.status, p.url)
	}
	if n := r.sessions(); n != 1 {
		t.Errorf("%d sessions after another sign-in, want 1: the abandoned one past its limit is still kept", n)
	}
	// One left idle (not past the absolute limit) goes at the next start.
	r.clock.Add(DefaultIdle + time.Minute)
	if _, err := New(Options{Store: r.st, Incidents: r.rep, Cases: r.rep, Now: r.clock.Now}); err != nil {
		t.Fatal(err)
	}
	if n := r.sessions(); n != 0 {
		t.Errorf("%d sessions after a start, want 0: an idle one past its timeout is still kept", n)
	}
}

func (r *rig) sessions() int {
	r.t.Helper()
	var n int
	if err := r.st.db.QueryRow(`SELECT count(*) FROM console_sessions`).Scan(&n); err != nil {
		r.t.Fatal(err)
	}
	return n
}
