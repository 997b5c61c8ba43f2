// Package reports records breaches and tells the right people about them.
//
// Events from the front doors go through a bounded queue (Writer, the
// Sink) into one SQLite database (Store), batched in transactions. Blocks
// and bypass attempts are grouped into incidents: one client (user, else
// device, else IP address) and one category within a window. Incidents at
// or above the alert severity are mailed at once (Alerter), at most once
// per client and category in the de-duplication window; everything else
// goes into digests on cron schedules (Digester), each covering exactly
// the time since the previous one. Every message is rendered and stored in
// the outbox table before it is sent (Mailer) and marked sent only after
// the SMTP server accepted it; without SMTP, messages are written as .eml
// files. Names on the restricted tier (IWF, CTIRU) never appear in mail.
package reports
