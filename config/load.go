package config

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	// The school's time zone must load on hosts without zoneinfo files
	// (containers, minimal installs); this embeds the tz database (~450 KB)
	// as a fallback.
	_ "time/tzdata"
)

// Load reads the configuration file at path, overlays it on the defaults
// (see Parse) and validates the result. On failure the error is Errors,
// listing every problem with its file:line:column and key path; a file that
// cannot be read gives a single Error that unwraps to the os error, so
// errors.Is(err, fs.ErrNotExist) works.
func Load(path string) (*Config, error) {
	seq := reads.Add(1)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, readError(path, err)
	}
	c, err := Parse(data, path)
	if c != nil {
		c.readSeq = seq
	}
	return c, err
}

// reads numbers the reads of config files (Load, the watcher) in the
// order they begin: each takes its number before reading the config or
// the managed lists, so a config with a higher number read both files
// after every change made before a lower one was taken.
var reads atomic.Uint64

// ReadSeq is the number of the read that made c (see reads): of two
// configs from the same files, the one with the higher number saw every
// change the other saw. 0 for a config not read by Load or the watcher.
// A reload that has applied a config must not then apply one with a
// lower number: it would undo changes made in between (a console edit of
// the managed lists, a config edit reloaded meanwhile).
func (c *Config) ReadSeq() uint64 { return c.readSeq }

// readError is the error for a config file that cannot be read; it
// unwraps to err.
func readError(path string, err error) error {
	msg := err.Error()
	var pe *fs.PathError
	if errors.As(err, &pe) {
		msg = pe.Err.Error()
	}
	return Errors{{File: path, Msg: "cannot read config: " + msg, cause: err}}
}

// Parse decodes a configuration file's contents; file names it in errors.
//
// The file overlays the defaults (Default): a key that is present replaces
// the default value of that key. Sections (school:, dns:, ...) merge key by
// key, so "dns: {listen: [...]}" keeps the default block_ttl. In a map
// (groups:, categories:) an entry replaces the default entry of the same
// name whole, entries not mentioned stay, and an entry set to null
// ("guests: ~") removes the default entry. Lists replace the default list
// whole.
//
// The result is normalised (see Validate) and validated; on failure the
// error is Errors and the Config is nil.
func Parse(data []byte, file string) (*Config, error) { return parse(data, file, false) }

// parse is Parse; files adds the checks of LoadChecked.
func parse(data []byte, file string, files bool) (*Config, error) {
	c := defaults()
	c.Source = file
	root, errs := parseDocument(data, file)
	if errs != nil {
		return nil, errs
	}
	d := newDecoder(file)
	if root != nil {
		d.decodeInto(root, c)
	}
	c.normalize()
	v := newValidator(c, file, d.pos, d.bad)
	v.checkFiles = files
	v.run()
	all := append(d.errs, v.errs...)
	if len(all) > 0 {
		all.sort()
		return nil, all
	}
	c.warnings = v.warnings()
	return c, nil
}

// Validate normalises c as Parse does (group names from their keys, empty
// safe_search to strict, enumerated values to lower case, bare upstream
// addresses to port 53) and checks it as a whole. It is for configurations
// built in code; the errors have key paths but no positions.
func (c *Config) Validate() error {
	c.normalize()
	v := newValidator(c, c.Source, nil, nil)
	v.run()
	if len(v.errs) > 0 {
		return v.errs
	}
	c.warnings = v.warnings()
	return nil
}

// normalize fills in derived values and puts enumerated values in lower
// case, so that users of Config can compare them directly.
func (c *Config) normalize() {
	lower := func(s *string) { *s = strings.ToLower(strings.TrimSpace(*s)) }
	lowerAll := func(ss []string) {
		for i := range ss {
			lower(&ss[i])
		}
	}
	lower(&c.Log.Level)
	lower(&c.Log.Format)
	lower(&c.DNS.BlockResponse)
	port53(c.DNS.Upstreams)
	for _, g := range c.DNS.GroupUpstreams {
		port53(g.Upstreams)
	}
	for k, p := range c.Categories {
		lower(&p.Route)
		c.Categories[k] = p
	}
	for i := range c.Lists {
		l := &c.Lists[i]
		lower(&l.Format)
		lower(&l.Category)
		for k, v := range l.Categories {
			lower(&v)
			l.Categories[k] = v
		}
	}
	c.Proxy.Inspect.hosts = newDecryptHosts(c.Proxy.Inspect.NeverDecrypt, c.Proxy.Inspect.SearchHosts)
	c.Proxy.ContentCheck.hosts = newContentHosts(c.Proxy.ContentCheck.AIHosts, c.Proxy.ContentCheck.Exempt)
	for name, g := range c.Groups {
		if g == nil {
			delete(c.Groups, name)
			continue
		}
		g.Name = name
		lower(&g.SafeSearch)
		if g.SafeSearch == "" {
			g.SafeSearch = "strict"
		}
		lowerAll(g.Block)
		for i := range g.Schedules {
			s := &g.Schedules[i]
			lowerAll(s.Block)
			for j := range s.When {
				lowerAll(s.When[j].Days)
			}
		}
	}
}

// Location returns the school's time zone (school.timezone). For a
// configuration that did not pass validation it falls back to
// Europe/London.
func (c *Config) Location() *time.Location {
	if c.loc != nil {
		return c.loc
	}
	if c.School.Timezone != "" {
		if l, err := time.LoadLocation(c.School.Timezone); err == nil {
			return l
		}
	}
	l, err := time.LoadLocation(DefaultTimezone)
	if err != nil {
		return time.UTC
	}
	return l
}

// Dir is Gatehouse's data directory: the directory of the database file.
// Downloaded lists are cached in ListsCacheDir and outgoing reports queued
// in OutboxDir, both under it. Relative paths are relative to the working
// directory, as database: itself is.
func (c *Config) Dir() string {
	if c.Database == "" {
		return "."
	}
	return filepath.Dir(c.Database)
}

// ListsCacheDir is Dir()/lists/cache.
func (c *Config) ListsCacheDir() string { return filepath.Join(c.Dir(), "lists", "cache") }

// OutboxDir is Dir()/outbox.
func (c *Config) OutboxDir() string { return filepath.Join(c.Dir(), "outbox") }

// Warnings lists problems worth logging that do not stop the configuration
// from loading: networks or devices outside clients.allow, and secret files
// other users can read (checked when called). They never contain secret
// values.
func (c *Config) Warnings() []string {
	out := append([]string(nil), c.warnings...)
	paths, secrets := c.secrets()
	for i, s := range secrets {
		if w := s.Warning(); w != "" {
			out = append(out, paths[i]+": "+w)
		}
	}
	return out
}

// SlogLevel returns log.level as a slog.Level (info if unknown).
func (l Log) SlogLevel() slog.Level {
	switch strings.ToLower(l.Level) {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// dayBits maps day names to sets of days: bit n is time.Weekday n.
var dayBits = map[string]uint8{
	"sun": 1 << time.Sunday, "mon": 1 << time.Monday, "tue": 1 << time.Tuesday,
	"wed": 1 << time.Wednesday, "thu": 1 << time.Thursday, "fri": 1 << time.Friday,
	"sat":    1 << time.Saturday,
	"sunday": 1 << time.Sunday, "monday": 1 << time.Monday, "tuesday": 1 << time.Tuesday,
	"wednesday": 1 << time.Wednesday, "thursday": 1 << time.Thursday, "friday": 1 << time.Friday,
	"saturday": 1 << time.Saturday,
	"weekdays": 0b0111110,
	"weekend":  0b1000001,
	"daily":    0b1111111,
}

var dayNames = []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun", "weekdays", "weekend", "daily"}

// ParseDays reads a schedule window's days: mon..sun (or monday..sunday),
// weekdays, weekend or daily, in any case, as a bit set (bit n is
// time.Weekday n, so 1<<time.Monday is Monday). No names means daily
// (validation asks for them). It is the one reading of day names: the
// validator and the policy engine both use it, so a name config check
// accepts is a day the engine blocks on.
func ParseDays(names []string) (uint8, error) {
	if len(names) == 0 {
		return dayBits["daily"], nil
	}
	var m uint8
	for _, n := range names {
		v, ok := dayBits[strings.ToLower(strings.TrimSpace(n))]
		if !ok {
			return 0, fmt.Errorf("unknown day %q (want mon..sun, weekdays, weekend or daily)%s", n, didYouMean(n, dayNames))
		}
		m |= v
	}
	return m, nil
}

// DayMask returns the window's days as a bit set (ParseDays). Unknown
// names (rejected by validation) are ignored.
func (w TimeWindow) DayMask() uint8 {
	var m uint8
	for _, d := range w.Days {
		v, _ := ParseDays([]string{d})
		m |= v
	}
	return m
}

// port53 gives bare IP upstreams port 53, in place.
func port53(ups []string) {
	for i, u := range ups {
		if a, err := netip.ParseAddr(strings.TrimSpace(u)); err == nil {
			ups[i] = net.JoinHostPort(a.String(), "53")
		}
	}
}
