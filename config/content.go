package config

import (
	_ "embed"
	"strings"
)

// ProxyContentCheck configures the proxy's real-time content check: the
// text of HTML and plain-text answers (and the JSON of AI chat services)
// is scored against the watchlists as it streams to a pupil; a page over a
// theme's content_report threshold is reported, one over content_block
// has the rest of it replaced by the block notice. Which groups are
// checked is per group (content_check).
type ProxyContentCheck struct {
	// MaxBytes is how much of an answer is scored; the rest passes
	// unscored (default 1MiB).
	MaxBytes ByteSize `yaml:"max_bytes"`
	// AIHosts adds domains to the built-in table of AI chat services
	// (config/hosts/ai_hosts.txt) whose JSON answers are scored.
	AIHosts []string `yaml:"ai_hosts"`
	// Exempt adds domains to the built-in list of support services
	// (config/hosts/content_exempt.txt) whose pages are never scored.
	Exempt []string `yaml:"exempt"`

	hosts *contentHosts
}

// Content check defaults and bounds.
const (
	DefaultContentMaxBytes = 1 << 20
	maxContentMaxBytes     = 64 << 20
)

// Content check settings of a group.
const (
	ContentCheckOn  = "on"
	ContentCheckOff = "off"
)

// ContentCheckDefaultGroup is the group whose content check is on unless
// its config says otherwise; every other group's is off.
const ContentCheckDefaultGroup = "students"

var (
	//go:embed hosts/ai_hosts.txt
	builtinAIText string
	//go:embed hosts/content_exempt.txt
	builtinExemptText string

	builtinContentHosts = newContentHosts(nil, nil)
)

// BuiltinAIHosts is the built-in table of AI chat services, in file order.
func BuiltinAIHosts() []string { return hostLines(builtinAIText) }

// BuiltinContentExempt is the built-in list of hosts never scored.
func BuiltinContentExempt() []string { return hostLines(builtinExemptText) }

type contentHosts struct {
	ai, exempt HostSet
}

func newContentHosts(ai, exempt []string) *contentHosts {
	return &contentHosts{
		ai:     NewHostSet(BuiltinAIHosts(), ai),
		exempt: NewHostSet(BuiltinContentExempt(), exempt),
	}
}

func (c *Config) contentHosts() *contentHosts {
	if h := c.Proxy.ContentCheck.hosts; h != nil {
		return h
	}
	return builtinContentHosts
}

// ContentCheck reports whether the group's answers are scored (its
// content_check; unset: on for the students group only).
func (c *Config) ContentCheck(group string) bool {
	g := c.Groups[group]
	switch {
	case g == nil:
		return false
	case g.ContentCheck != "":
		return g.ContentCheck == ContentCheckOn
	}
	return group == ContentCheckDefaultGroup
}

// ContentExempt reports whether host's answers are never scored: a
// support service (the built-in list or proxy.content_check.exempt) or a
// host on the never-decrypt list. It does not allocate.
func (c *Config) ContentExempt(host string) bool {
	return c.contentHosts().exempt.Has(host) || c.NeverDecrypt(host)
}

// AIHost reports whether host is an AI chat service whose JSON answers are
// scored. It does not allocate.
func (c *Config) AIHost(host string) bool {
	return c.contentHosts().ai.Has(host)
}

// ContentMaxBytes is proxy.content_check.max_bytes.
func (c *Config) ContentMaxBytes() int64 {
	if m := c.Proxy.ContentCheck.MaxBytes; m > 0 {
		return int64(m)
	}
	return DefaultContentMaxBytes
}

// contentCheck validates proxy.content_check and the groups' content_check.
func (v *validator) contentCheck() {
	cc := &v.c.Proxy.ContentCheck
	if cc.MaxBytes < 1<<10 || cc.MaxBytes > maxContentMaxBytes {
		v.errf("proxy.content_check.max_bytes", "must be between 1KiB and 64MiB")
	}
	v.checkHostList("proxy.content_check.ai_hosts", cc.AIHosts)
	v.checkHostList("proxy.content_check.exempt", cc.Exempt)
	for name, g := range v.c.Groups {
		if g == nil {
			continue
		}
		g.ContentCheck = strings.ToLower(strings.TrimSpace(g.ContentCheck))
		switch g.ContentCheck {
		case "", ContentCheckOn, ContentCheckOff:
		default:
			v.errf(joinKey(joinKey("groups", name), "content_check"), "unknown value %q (want on or off)", g.ContentCheck)
		}
	}
}
