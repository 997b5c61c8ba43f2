// Package config holds Gatehouse's configuration: one YAML file decoded
// strictly into typed structs, validated as a whole, with safe embedded
// defaults for everything the file leaves out.
package config

import (
	"net/netip"
	"time"

	"github.com/gatehouse-filter/gatehouse/blocklists"
)

// Config is the whole configuration file.
type Config struct {
	School     School                   `yaml:"school"`
	Log        Log                      `yaml:"log"`
	Database   string                   `yaml:"database"` // SQLite file; lists/cache and outbox/ live beside it
	DNS        DNS                      `yaml:"dns"`
	Reports    Reports                  `yaml:"reports"`
	Proxy      Proxy                    `yaml:"proxy"`
	Admin      Admin                    `yaml:"admin"`
	Console    Console                  `yaml:"console"` // the safeguarding console (console.go)
	Clients    Clients                  `yaml:"clients"`
	Identity   Identity                 `yaml:"identity"`   // who is behind an address (identity.go)
	Categories map[string]CategoryPrefs `yaml:"categories"` // per-category severity/route overrides
	Lists      []List                   `yaml:"lists"`
	Groups     map[string]*Group        `yaml:"groups"`
	Watchlists Watchlists               `yaml:"watchlists"` // search terms: watchlists and search engines (watchlists.go)

	// Source is the file the config was read from ("" for embedded defaults).
	Source string `yaml:"-"`

	loc      *time.Location // School.Timezone, loaded by validation
	warnings []string       // non-fatal problems found by validation
	managed  *Managed       // the managed lists read with it (managed.go)
	readSeq  uint64         // the read that made it (ReadSeq, load.go)
}

// School describes the school itself.
type School struct {
	Name     string `yaml:"name"`
	Timezone string `yaml:"timezone"` // IANA name, default Europe/London
}

// Log sets the structured log output.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// Admin configures the admin listener (metrics, PAC file, block page).
type Admin struct {
	Listen string `yaml:"listen"`
	// Allow lists who may read /metrics and /healthz (IT's monitoring);
	// empty: clients.allow. The PAC file, block page and "report a
	// mistake" form answer clients.allow. Anyone else gets 403.
	Allow []netip.Prefix `yaml:"allow"`
}

// Clients says who may use Gatehouse and how they are identified.
type Clients struct {
	Allow        []netip.Prefix `yaml:"allow"`         // client ACL; others are refused (a bare address is a /32 or /128)
	DefaultGroup string         `yaml:"default_group"` // group of clients no network matches
	Devices      []Device       `yaml:"devices"`
	Users        []User         `yaml:"users"`
}

// Device names a client by IP or MAC address.
type Device struct {
	Name  string     `yaml:"name"`
	IP    netip.Addr `yaml:"ip"`
	MAC   string     `yaml:"mac"`   // EUI-48, e.g. 3c:22:fb:12:34:56 (any form net.ParseMAC reads)
	Group string     `yaml:"group"` // optional: overrides the network's group
}

// User is a named person; the proxy maps logins to users.
type User struct {
	Name  string `yaml:"name"`
	Group string `yaml:"group"`
}

// CategoryPrefs overrides a catalogue category's defaults.
type CategoryPrefs struct {
	Severity *blocklists.Severity `yaml:"severity"`
	Route    string               `yaml:"route"` // dsl, it, headteacher, none
}

// List is one blocklist source: a local file or directory, or a URL.
type List struct {
	Name string `yaml:"name"`
	Path string `yaml:"path"` // local file or squidGuard directory
	URL  string `yaml:"url"`  // http(s) feed, cached on disk
	// Category of every entry; empty for squidGuard trees (see Categories)
	// and for lists used only as group allow/deny lists.
	Category string `yaml:"category"`
	// Categories maps squidGuard sub-directory names to catalogue categories;
	// sub-directories not named are skipped. Default: the UT1 mapping.
	Categories map[string]string `yaml:"categories"`
	Format     string            `yaml:"format"`  // auto (default), domains, hosts, adblock, wildcard, squidguard, urls, ips, sha256
	Refresh    string            `yaml:"refresh"` // cron spec, e.g. "0 3 * * *" or "@daily", optional CRON_TZ= prefix; on a path list, re-read the file
	MaxSize    ByteSize          `yaml:"max_size"`
	Timeout    Duration          `yaml:"timeout"`
	// MinRatio refuses a refresh that yields fewer than this share of the
	// previous entry count (default 0.5).
	MinRatio *float64 `yaml:"min_ratio"`
	// Auth for feeds that need credentials (IWF, CTIRU, commercial lists).
	Auth *FeedAuth `yaml:"auth"`
}

// FeedAuth is how a list download authenticates.
type FeedAuth struct {
	Username string  `yaml:"username"`
	Password *Secret `yaml:"password"` // with username: HTTP Basic
	Header   string  `yaml:"header"`   // e.g. Authorization; value from Token
	Token    *Secret `yaml:"token"`
}

// Secret is read from a file or an environment variable, never written
// inline in the config file.
type Secret struct {
	File string `yaml:"file"`
	Env  string `yaml:"env"`
}

// Group is a filtering profile.
type Group struct {
	Description string         `yaml:"description"`
	Networks    []netip.Prefix `yaml:"networks"` // CIDRs (a bare address is a /32 or /128); one group per prefix
	Block       []string       `yaml:"block"`    // categories always blocked
	Schedules   []Schedule     `yaml:"schedules"`
	Allow       []string       `yaml:"allow"`       // domains or host/path URLs
	Deny        []string       `yaml:"deny"`        // domains or host/path URLs
	AllowLists  []string       `yaml:"allow_lists"` // names from lists: (lists without a category; never the restricted tier)
	DenyLists   []string       `yaml:"deny_lists"`  // names from lists: (lists without a category)
	SafeSearch  string         `yaml:"safe_search"` // off, moderate, strict (default strict)
	// ProxyLogin makes the group's clients log in to the HTTP proxy
	// (proxy.auth) before they can browse through it.
	ProxyLogin bool `yaml:"proxy_login"`
	// Decrypt is what HTTPS the proxy decrypts for the group once the
	// school's CA exists: off or blocks (default); see ProxyInspect.
	Decrypt string `yaml:"decrypt"`
	// ContentCheck scores the group's pages as they stream (on or off;
	// default on for students, off for the other groups): see
	// ProxyContentCheck.
	ContentCheck string `yaml:"content_check"`

	// Name is the map key, filled in on load.
	Name string `yaml:"-"`
	// ManagedAllow and ManagedDeny are the group's entries from the
	// managed lists (ManagedFile), filled in on load.
	ManagedAllow []string `yaml:"-"`
	ManagedDeny  []string `yaml:"-"`
}

// Schedule blocks extra categories at set times (e.g. games in lessons).
type Schedule struct {
	Name  string       `yaml:"name"`
	Block []string     `yaml:"block"`
	When  []TimeWindow `yaml:"when"`
}

// TimeWindow is a weekly time range in the school's time zone.
type TimeWindow struct {
	Days []string  `yaml:"days"` // mon..sun, or weekdays/weekend/daily
	From ClockTime `yaml:"from"` // HH:MM
	To   ClockTime `yaml:"to"`   // HH:MM; before From means overnight
}
