package config

// Reports configures the breach store, alerts, digests and mail.
type Reports struct{}

// defaultReports is the embedded reports section.
func defaultReports() Reports { return Reports{} }

// reports validates the reports: section.
func (v *validator) reports() {}
