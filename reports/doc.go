// Package reports will hold the breach store (SQLite), incidents,
// immediate alerts and scheduled digests to the DSL. It arrives in its own
// issue; this package holds nothing yet.
package reports
