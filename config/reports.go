package config

import (
	"fmt"
	"maps"
	"net/mail"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/robfig/cron/v3"
)

// Reports configures the breach store, alerts, digests and mail.
type Reports struct {
	// Recipients maps a role (dsl, it, headteacher or any custom name) to
	// the addresses that receive its mail.
	Recipients map[string][]string `yaml:"recipients"`
	SMTP       ReportsSMTP         `yaml:"smtp"`

	// AlertSeverity is the lowest severity mailed at once (default high).
	AlertSeverity blocklists.Severity `yaml:"alert_severity"`
	// AlertDedup allows at most one alert per client and category in this
	// window; the next one says how many more attempts there were.
	AlertDedup Duration `yaml:"alert_dedup"`
	// MistakeMailEvery is the least time between two mails to IT of
	// "report a mistake" forms; each mail carries all new ones.
	MistakeMailEvery Duration `yaml:"mistake_mail_every"`
	// IncidentWindow groups a client's events in one category into one
	// incident while they are no further apart than this.
	IncidentWindow Duration `yaml:"incident_window"`
	// Samples is how many names/URLs/search terms an incident keeps.
	Samples int `yaml:"samples"`
	// StaffToHeadteacher sends breaches by StaffGroups to the headteacher
	// instead of the DSL (allegations-against-staff practice).
	StaffToHeadteacher bool     `yaml:"staff_to_headteacher"`
	StaffGroups        []string `yaml:"staff_groups"`

	Digests []DigestSchedule `yaml:"digests"`
	// SendEmpty sends a short "no incidents" digest for a quiet period, so
	// silence never means broken.
	SendEmpty bool `yaml:"send_empty"`

	Retention ReportsRetention `yaml:"retention"`
	// Health says when IT is mailed about problems (every upstream down, a
	// list not loaded, mail or the event store failing).
	Health ReportsHealth `yaml:"health"`
	// Outbox is where messages are written as .eml files: all of them when
	// smtp.host is empty, and copies of failing ones otherwise. Empty means
	// outbox/ beside the database (Config.OutboxDir).
	Outbox string `yaml:"outbox"`
}

// ReportsSMTP is the mail submission server.
type ReportsSMTP struct {
	Host     string  `yaml:"host"` // empty: no SMTP, messages go to the outbox directory only
	Port     int     `yaml:"port"` // default 587 (submission)
	Username string  `yaml:"username"`
	Password *Secret `yaml:"password"`
	From     string  `yaml:"from"`
	// TLS is starttls (required, the default), tls (implicit TLS, port 465),
	// opportunistic or none (both only for a relay on the same host).
	TLS     string   `yaml:"tls"`
	Timeout Duration `yaml:"timeout"`
}

// DigestSchedule is one scheduled digest.
type DigestSchedule struct {
	Name string `yaml:"name"`
	// Cron is a cron spec; without a CRON_TZ= prefix it runs in the
	// school's time zone.
	Cron       string   `yaml:"cron"`
	Recipients []string `yaml:"recipients"` // roles
}

// ReportsRetention says how long records are kept.
type ReportsRetention struct {
	Breaches Duration `yaml:"breaches"`  // blocks, bypass attempts and their incidents
	QueryLog Duration `yaml:"query_log"` // allowed requests (full logging only)
	// CaseRecords is how long a case record (an incident the DSL acted
	// on in the console, its notes and its attempts) is kept after its
	// last attempt and closing: "keep" (the default) or years ("25y").
	CaseRecords KeepFor `yaml:"case_records"`
}

// ReportsHealth says when IT is told about a health problem: once it has
// lasted NotifyAfter, again every RemindEvery while it lasts, and when it
// is resolved.
type ReportsHealth struct {
	NotifyAfter Duration `yaml:"notify_after"`
	RemindEvery Duration `yaml:"remind_every"`
}

// Reports defaults.
const (
	DefaultAlertDedup      = 10 * time.Minute
	DefaultMistakeMail     = 5 * time.Minute
	DefaultIncidentWindow  = 30 * time.Minute
	DefaultSamples         = 5
	DefaultSMTPPort        = 587
	DefaultSMTPTimeout     = 30 * time.Second
	DefaultBreachRetention = 365 * 24 * time.Hour
	DefaultQueryLogRetain  = 30 * 24 * time.Hour
	DefaultHealthAfter     = 5 * time.Minute
	DefaultHealthRemind    = 24 * time.Hour
)

// Roles with a meaning of their own: categories route to them.
var builtinRoles = []string{"dsl", "it", "headteacher"}

// defaultReports is the embedded reports section.
func defaultReports() Reports {
	return Reports{
		Recipients:         map[string][]string{},
		SMTP:               ReportsSMTP{Port: DefaultSMTPPort, TLS: "starttls", Timeout: Duration(DefaultSMTPTimeout)},
		AlertSeverity:      blocklists.SeverityHigh,
		AlertDedup:         Duration(DefaultAlertDedup),
		MistakeMailEvery:   Duration(DefaultMistakeMail),
		IncidentWindow:     Duration(DefaultIncidentWindow),
		Samples:            DefaultSamples,
		StaffToHeadteacher: true,
		StaffGroups:        []string{"staff"},
		Digests: []DigestSchedule{
			{Name: "daily", Cron: "30 7 * * 1-5", Recipients: []string{"dsl"}},
			{Name: "weekly", Cron: "0 8 * * 1", Recipients: []string{"dsl", "headteacher", "it"}},
		},
		SendEmpty: true,
		Retention: ReportsRetention{Breaches: Duration(DefaultBreachRetention), QueryLog: Duration(DefaultQueryLogRetain)},
		Health:    ReportsHealth{NotifyAfter: Duration(DefaultHealthAfter), RemindEvery: Duration(DefaultHealthRemind)},
	}
}

// DigestSpec returns a schedule's cron spec with the school's time zone
// added when the spec names none.
func (c *Config) DigestSpec(d DigestSchedule) string {
	s := strings.TrimSpace(d.Cron)
	if strings.HasPrefix(s, "CRON_TZ=") || strings.HasPrefix(s, "TZ=") {
		return s
	}
	return "CRON_TZ=" + c.Location().String() + " " + s
}

// ReportsOutbox is reports.outbox, or OutboxDir when it is empty.
func (c *Config) ReportsOutbox() string {
	if strings.TrimSpace(c.Reports.Outbox) != "" {
		return c.Reports.Outbox
	}
	return c.OutboxDir()
}

var roleRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

// reports validates the reports: section.
func (v *validator) reports() {
	r := &v.c.Reports
	for _, role := range slices.Sorted(maps.Keys(r.Recipients)) {
		p := joinKey("reports.recipients", role)
		if !roleRE.MatchString(role) {
			v.errf(p, "role name %q: use up to 32 lower-case letters, digits, '-' and '_', starting with a letter", role)
		}
		if len(r.Recipients[role]) == 0 && !slices.Contains(builtinRoles, role) {
			// The built-in roles fall back to the DSL; a role of the
			// school's own with no address would have its digests sent
			// to nobody, unseen.
			v.warnf(p, "role %q has no addresses: digests for it are sent to nobody (add an address, or remove the role and its digests)", role)
		}
		seen := map[string]bool{}
		for i, a := range r.Recipients[role] {
			ap := joinIndex(p, i)
			addr, err := mail.ParseAddress(a)
			switch {
			case err != nil:
				v.errf(ap, "invalid email address %q (want e.g. dsl@school.example or \"Jo Bloggs <jo@school.example>\")", a)
			case seen[strings.ToLower(addr.Address)]:
				v.errf(ap, "address %s is listed twice", addr.Address)
			default:
				seen[strings.ToLower(addr.Address)] = true
			}
		}
	}
	knownRole := func(path, role string) {
		if _, ok := r.Recipients[role]; ok || slices.Contains(builtinRoles, role) {
			return
		}
		v.errf(path, "unknown role %q (want dsl, it, headteacher or a role under reports.recipients)%s", role, didYouMean(role, append(slices.Clone(builtinRoles), slices.Collect(maps.Keys(r.Recipients))...)))
	}

	s := &r.SMTP
	s.TLS = strings.ToLower(strings.TrimSpace(s.TLS))
	if s.TLS == "" {
		s.TLS = "starttls"
	}
	if !slices.Contains([]string{"starttls", "tls", "opportunistic", "none"}, s.TLS) {
		v.errf("reports.smtp.tls", "unknown TLS mode %q (want starttls, tls, opportunistic or none)", s.TLS)
	}
	if s.Port < 1 || s.Port > 65535 {
		v.errf("reports.smtp.port", "must be between 1 and 65535 (587 for submission with STARTTLS, 465 for tls)")
	}
	v.between("reports.smtp.timeout", s.Timeout, time.Second, 10*time.Minute)
	if host := strings.TrimSpace(s.Host); host != "" {
		if strings.ContainsAny(host, " /:@") {
			v.errf("reports.smtp.host", "invalid host %q (want a host name or IP address; the port goes in port:)", host)
		}
		if s.From == "" {
			v.errf("reports.smtp.from", "needed when smtp.host is set (e.g. \"Gatehouse <gatehouse@school.example>\")")
		}
		if (s.TLS == "none" || s.TLS == "opportunistic") && s.Password != nil && !isLoopbackHost(host) {
			v.errf("reports.smtp.tls", "a password must not be sent without TLS; use starttls or tls")
		}
	}
	if s.From != "" {
		if _, err := mail.ParseAddress(s.From); err != nil {
			v.errf("reports.smtp.from", "invalid email address %q", s.From)
		}
	}
	switch {
	case s.Username != "" && s.Password == nil && !v.bad["reports.smtp.password"]:
		v.errf("reports.smtp.username", "username: needs password: (a secret file or variable)")
	case s.Username == "" && s.Password != nil:
		v.errf("reports.smtp.password", "password: needs username:")
	}
	v.secret("reports.smtp.password", s.Password)
	if w := s.Password.Warning(); w != "" {
		v.warnf("reports.smtp.password", "%s", w)
	}

	if r.AlertSeverity < blocklists.SeverityLow || r.AlertSeverity > blocklists.SeverityCritical {
		v.errf("reports.alert_severity", "must be low, medium, high or critical")
	}
	v.between("reports.alert_dedup", r.AlertDedup, time.Minute, 24*time.Hour)
	v.between("reports.mistake_mail_every", r.MistakeMailEvery, time.Minute, 24*time.Hour)
	v.between("reports.incident_window", r.IncidentWindow, time.Minute, 24*time.Hour)
	if r.Samples < 1 || r.Samples > 50 {
		v.errf("reports.samples", "must be between 1 and 50")
	}
	for i, g := range r.StaffGroups {
		// The default names "staff"; a file without that group is fine.
		if _, ok := v.c.Groups[g]; !ok && v.has("reports.staff_groups") {
			v.errf(joinIndex("reports.staff_groups", i), "no group named %q%s", g, didYouMean(g, slices.Sorted(maps.Keys(v.c.Groups))))
		}
	}
	if r.StaffToHeadteacher && len(r.StaffGroups) == 0 {
		v.errf("reports.staff_groups", "staff_to_headteacher needs the staff groups (e.g. [staff])")
	}

	names := map[string]bool{}
	for i := range r.Digests {
		d := &r.Digests[i]
		p := joinIndex("reports.digests", i)
		switch {
		case !nameRE.MatchString(d.Name):
			v.errf(joinKey(p, "name"), "a digest needs a name: (letters, digits, '.', '_' and '-'), e.g. daily")
		case names[d.Name]:
			v.errf(joinKey(p, "name"), "duplicate digest name %q", d.Name)
		}
		names[d.Name] = true
		if strings.TrimSpace(d.Cron) == "" {
			v.errf(joinKey(p, "cron"), "a digest needs cron: (e.g. \"30 7 * * 1-5\")")
		} else if _, err := parseCron(v.c.DigestSpec(*d)); err != nil {
			v.errf(joinKey(p, "cron"), "invalid schedule %q: %v (want a cron spec such as \"30 7 * * 1-5\", optionally with CRON_TZ=Europe/London)", d.Cron, err)
		}
		if len(d.Recipients) == 0 {
			v.errf(joinKey(p, "recipients"), "a digest needs recipients: (roles, e.g. [dsl])")
		}
		for j, role := range d.Recipients {
			knownRole(joinIndex(joinKey(p, "recipients"), j), role)
		}
	}

	v.between("reports.retention.breaches", r.Retention.Breaches, 24*time.Hour, 10*365*24*time.Hour)
	v.between("reports.retention.query_log", r.Retention.QueryLog, time.Hour, 365*24*time.Hour)
	if cr := r.Retention.CaseRecords.D(); cr != 0 && cr < r.Retention.Breaches.D() {
		v.errf("reports.retention.case_records", "case records must be kept at least as long as breaches (%s): a case outlives the events it is about", fmtDur(r.Retention.Breaches.D()))
	}
	v.between("reports.health.notify_after", r.Health.NotifyAfter, time.Minute, 24*time.Hour)
	v.between("reports.health.remind_every", r.Health.RemindEvery, time.Hour, 30*24*time.Hour)
	if len(r.Recipients["dsl"]) == 0 && strings.TrimSpace(s.Host) != "" {
		v.warnf("reports.recipients", "no dsl addresses: mail for the DSL is written to the outbox directory only")
	}
}

func isLoopbackHost(h string) bool {
	return h == "localhost" || h == "127.0.0.1" || h == "::1" || strings.HasPrefix(h, "127.")
}

// parseCron parses a standard cron spec (optionally with a CRON_TZ= or TZ=
// prefix). robfig/cron panics on some malformed prefixes (a zone with
// nothing after it): that is reported as an error, never a panic.
func parseCron(spec string) (s cron.Schedule, err error) {
	defer func() {
		if recover() != nil {
			s, err = nil, fmt.Errorf("malformed schedule %q: a CRON_TZ= or TZ= prefix needs a space and five fields after it", spec)
		}
	}()
	return cron.ParseStandard(spec)
}
