// Package storetest opens a real breach store and its event writer for
// the front doors' tests, which check what reached the database.
package storetest

import (
	"path/filepath"
	"testing"

	"github.com/gatehouse-filter/gatehouse/reports"
)

// Open opens a breach store in a temp dir and its writer, both closed
// when the test or benchmark ends.
func Open(tb testing.TB) (*reports.Store, *reports.Writer) {
	tb.Helper()
	st, err := reports.Open(filepath.Join(tb.TempDir(), "g.db"))
	if err != nil {
		tb.Fatal(err)
	}
	w, err := reports.NewWriter(st, reports.Options{})
	if err != nil {
		st.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() { w.Close(); st.Close() })
	return st, w
}

// Int is the one number query q (with args) reads from the store.
func Int(tb testing.TB, st *reports.Store, q string, args ...any) int64 {
	tb.Helper()
	var n int64
	if err := st.DB().QueryRow(q, args...).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}
