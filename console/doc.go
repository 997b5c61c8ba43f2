// Package console is the safeguarding console: a server-rendered web
// application (html/template, no script) on its own listener where the
// DSL, the headteacher, IT and auditors sign in with a password and a
// TOTP code. Accounts, sessions, sign-in failures and the append-only,
// hash-chained audit log live in console_* tables of the reports
// database, with their own schema versions (console_schema).
package console
