package console

import "time"

// Enable lets a disabled account sign in again (its password and second
// factor are unchanged; its failed sign-ins are forgotten). It reports
// false, changing nothing, when the account was not disabled.
func (s *Store) Enable(actor, addr, email string, now time.Time) (bool, error) {
	a, err := s.Account(email)
	if err != nil || !a.Disabled {
		return false, err
	}
	if _, err := s.db.Exec(`UPDATE console_accounts SET disabled = 0, changed_ts = ? WHERE id = ?`, now.UnixMilli(), a.ID); err != nil {
		return false, err
	}
	if _, err := s.db.Exec(`DELETE FROM console_failures WHERE key = ?`, "account:"+a.Email); err != nil {
		return false, err
	}
	return true, s.Audit(Entry{Time: now, Actor: actor, Addr: addr, Action: "account.enable", Target: a.Email, Detail: "enabled"})
}
