package reports

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// alertOnce stores one self-harm attempt in a fresh database, queues its
// alert and delivers it to srv; it returns the delivered Message-ID and the
// database path.
func alertOnce(t *testing.T, srv *testSMTP, at time.Time) (string, string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "g.db")
	st, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	p := testParts(t, srv.mailConfig(dir), func() time.Time { return at })
	w, err := NewWriter(st, p.Options)
	if err != nil {
		t.Fatal(err)
	}
	w.Record(ev(at, "10.0.0.5", "students", "self-harm", "harm.example"))
	w.Close()
	if n, err := NewAlerter(st, p.Options, p.Roles, p.School, p.Loc, nil).Check(context.Background()); err != nil || n != 1 {
		t.Fatalf("alerts %d, %v", n, err)
	}
	before := len(srv.messages())
	if _, err := NewMailer(st, p.Mail, nil, nil).DeliverDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	msgs := srv.wait(t, before+1, 10*time.Second)
	st.Close()
	return msgs[before].ID, path
}

// TestMessageIDsUniqueAcrossInstalls: two Gatehouse installs alerting on
// the same incident number must not send the same Message-ID (mail systems
// and DSL inboxes drop or thread a "duplicate"); a resend of one message
// after a crash keeps its ID.
func TestMessageIDsUniqueAcrossInstalls(t *testing.T) {
	srv := newTestSMTP(t)
	at := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	id1, path := alertOnce(t, srv, at)
	id2, _ := alertOnce(t, srv, at)
	if id1 == id2 {
		t.Fatalf("two installs sent the same Message-ID %s", id1)
	}
	for _, id := range []string{id1, id2} {
		if !strings.HasPrefix(id, "<alert-1-1.") || !strings.HasSuffix(id, ">") || strings.Count(id, "@") != 1 {
			t.Errorf("Message-ID %q: want <alert-1-1.INSTALL@HOST>", id)
		}
	}

	// A crash after the server took the message but before it was marked
	// sent: at restart it goes again, with the same ID.
	st, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.db.Exec(`UPDATE outbox SET sent_ts = 0`); err != nil {
		t.Fatal(err)
	}
	before := len(srv.messages())
	if _, err := NewMailer(st, srv.mailConfig(t.TempDir()), nil, nil).DeliverDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	msgs := srv.wait(t, before+1, 10*time.Second)
	if got := msgs[before].ID; got != id1 {
		t.Errorf("resend has Message-ID %s, first send %s", got, id1)
	}
}
