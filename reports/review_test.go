package reports

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestMistakeReviews: a report is pending until IT approves or rejects it,
// once, with a reason; the it role's digest says how many wait.
func TestMistakeReviews(t *testing.T) {
	clk := newClock(time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC))
	st := openTemp(t)
	p := testParts(t, MailConfig{Dir: t.TempDir()}, clk.Now)
	w, err := NewWriter(st, p.Options)
	if err != nil {
		t.Fatal(err)
	}
	w.Record(mistakeEvent(clk.Now(), "10.0.0.1", "http://a.example/x", "for science"))
	w.Record(mistakeEvent(clk.Now(), "10.0.0.2", "http://b.example/y", "homework"))
	w.Record(ev(clk.Now(), "10.0.0.3", "students", "games", "c.example")) // a breach, not a report
	w.Close()

	pending, err := st.PendingMistakes(0)
	if err != nil || len(pending) != 2 {
		t.Fatalf("pending: %v %v", pending, err)
	}
	a := pending[0]
	if a.Ref != "GH-AAAA-BBBB" || a.Note != "for science" || a.URL != "http://a.example/x" {
		t.Errorf("pending report: %+v", a)
	}
	if err := st.ReviewMistake(a.ID, Review{Status: ReviewApproved, Actor: "it@school.example", Time: clk.Now()}); err == nil {
		t.Error("a review without a reason was accepted")
	}
	if err := st.ReviewMistake(a.ID, Review{Status: ReviewApproved, Reason: "science site", Actor: "it@school.example", Time: clk.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := st.ReviewMistake(a.ID, Review{Status: ReviewRejected, Reason: "again", Actor: "x@school.example", Time: clk.Now()}); !errors.Is(err, ErrReviewed) {
		t.Errorf("second review: %v", err)
	}
	var breach int64
	if err := st.db.QueryRow(`SELECT id FROM events WHERE kind = 1`).Scan(&breach); err != nil {
		t.Fatal(err)
	}
	if err := st.ReviewMistake(breach, Review{Status: ReviewRejected, Reason: "x", Actor: "x", Time: clk.Now()}); !errors.Is(err, ErrNoMistake) {
		t.Errorf("review of a breach: %v", err)
	}
	_, r, err := st.MistakeByID(a.ID)
	if err != nil || r == nil || r.Status != ReviewApproved || r.Reason != "science site" || r.Actor != "it@school.example" {
		t.Errorf("review read back: %+v %v", r, err)
	}
	if n, err := st.PendingMistakeCount(); err != nil || n != 1 {
		t.Errorf("pending count %d %v", n, err)
	}

	d, err := NewDigester(st, p.Options, p.Roles, p.School, p.Loc, p.Schedules, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := d.Preview(context.Background(), "weekly")
	if err != nil {
		t.Fatal(err)
	}
	var it, dsl string
	for _, m := range msgs {
		switch m.Role {
		case "it":
			it = m.Subject + "\n" + m.Text + m.HTML
		case "dsl":
			dsl = m.Text
		}
	}
	if !strings.Contains(it, "1 mistake report to review") || !strings.Contains(it, "MIS-BLOCK QUEUE: 1 report(s)") || !strings.Contains(it, "<b>Mis-block queue:</b> 1 report(s)") {
		t.Errorf("IT digest lacks the pending count:\n%s", it)
	}
	if strings.Contains(dsl, "MIS-BLOCK QUEUE") {
		t.Errorf("the DSL's digest shows IT's queue:\n%s", dsl)
	}
}
