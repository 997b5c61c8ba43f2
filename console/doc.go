// Package console is the safeguarding console: a server-rendered web
// application (html/template, no script) on its own listener where the
// DSL, the headteacher, IT and auditors sign in with a password and a
// TOTP code. Accounts, sessions, sign-in failures and the append-only,
// hash-chained audit log live in console_* tables of the reports
// database, with their own schema versions (console_schema). The DSL's
// incident pages (incidents.go, dslhome.go) read and change incidents and
// their case records through the Cases interface, which reports.Store
// implements.
package console
