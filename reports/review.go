package reports

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// IT reviews each "report a mistake" form in the console's mis-block
// queue: approved (the site is allowed for the group) or rejected, with a
// reason. A form without a review is pending.

// Review statuses.
const (
	ReviewApproved = "approved"
	ReviewRejected = "rejected"
)

// Review is IT's decision on one mistake report.
type Review struct {
	Status string // approved or rejected
	Reason string
	Actor  string
	Time   time.Time
}

// ErrReviewed is returned when a report has been reviewed already.
var ErrReviewed = errors.New("this report has been reviewed already")

// ErrNoMistake is returned for an ID that is not a mistake report.
var ErrNoMistake = errors.New("no such mistake report")

// PendingMistakes lists the mistake reports not reviewed yet, oldest first,
// at most limit (0: all).
func (s *Store) PendingMistakes(limit int) ([]Mistake, error) {
	q := `SELECT ` + prefixCols("e.", mistakeCols) + ` FROM events e LEFT JOIN mistake_reviews r ON r.event_id = e.id
		WHERE e.kind = ? AND r.event_id IS NULL ORDER BY e.ts, e.id`
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	return collectMistakes(s.db.Query(q, kindReport))
}

// PendingMistakeCount counts the mistake reports not reviewed yet.
func (s *Store) PendingMistakeCount() (int, error) {
	return pendingMistakes(s.db)
}

func pendingMistakes(q interface {
	QueryRow(string, ...any) *sql.Row
}) (int, error) {
	var n int
	err := q.QueryRow(`SELECT count(*) FROM events e LEFT JOIN mistake_reviews r ON r.event_id = e.id
		WHERE e.kind = ? AND r.event_id IS NULL`, kindReport).Scan(&n)
	return n, err
}

// MistakeByID returns one mistake report and its review (nil: pending).
func (s *Store) MistakeByID(id int64) (Mistake, *Review, error) {
	m, err := scanMistake(s.db.QueryRow(`SELECT `+mistakeCols+` FROM events WHERE id = ? AND kind = ?`, id, kindReport))
	if errors.Is(err, sql.ErrNoRows) {
		return m, nil, ErrNoMistake
	}
	if err != nil {
		return m, nil, err
	}
	var r Review
	var ts int64
	err = s.db.QueryRow(`SELECT status, reason, actor, ts FROM mistake_reviews WHERE event_id = ?`, id).Scan(&r.Status, &r.Reason, &r.Actor, &ts)
	if errors.Is(err, sql.ErrNoRows) {
		return m, nil, nil
	}
	if err != nil {
		return m, nil, err
	}
	r.Time = fromMS(ts)
	return m, &r, nil
}

// ReviewMistake records IT's decision on a pending report; a report is
// reviewed once (ErrReviewed after that).
func (s *Store) ReviewMistake(id int64, r Review) error {
	if r.Status != ReviewApproved && r.Status != ReviewRejected {
		return fmt.Errorf("unknown review status %q", r.Status)
	}
	if strings.TrimSpace(r.Reason) == "" {
		return errors.New("a review needs a reason")
	}
	tx, err := s.db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var kind int
	if err := tx.QueryRow(`SELECT kind FROM events WHERE id = ?`, id).Scan(&kind); errors.Is(err, sql.ErrNoRows) || (err == nil && kind != kindReport) {
		return ErrNoMistake
	} else if err != nil {
		return err
	}
	res, err := tx.Exec(`INSERT INTO mistake_reviews (event_id, status, reason, actor, ts) VALUES (?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING`,
		id, r.Status, r.Reason, r.Actor, ms(r.Time))
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return ErrReviewed
	}
	return tx.Commit()
}

// prefixCols puts prefix before each of a comma-separated column list.
func prefixCols(prefix, cols string) string {
	return prefix + strings.ReplaceAll(cols, ", ", ", "+prefix)
}
