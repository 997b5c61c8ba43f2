package blocklists

import (
	"fmt"
	"math/bits"
	"strings"
)

// Category is one entry of the fixed category catalogue. Its value is its bit
// position in a CategorySet.
type Category uint8

// The catalogue. The order is fixed: it is the bit layout of CategorySet.
const (
	// Restricted tier: illegal content. Always enforced, never overridable,
	// entries never shown.
	IWF   Category = iota // IWF child sexual abuse list
	CTIRU                 // police-assessed unlawful terrorist content

	// Inappropriate content (UKSIC definitions).
	Discrimination
	Drugs
	Extremism
	Gambling
	Hate
	Malware
	Phishing
	Misinformation
	Piracy
	Pornography
	SelfHarm
	Violence

	// Filter bypass, kept apart so attempts can be reported as such.
	VPN
	WebProxy
	DoH
	Tor
	PrivateRelay

	// Automatic probes by browsers and operating systems (DoH canary, DDR):
	// answered so clients keep using this resolver, never reported as breaches.
	Canary

	// Search engines whose safe versions groups can enforce. A marker for
	// the safe-search rewrite, never blocked.
	SearchEngine

	// School policy.
	SocialMedia
	Games
	Streaming
	Dating
	Chat
	AI

	numCategories
)

// NumCategories is the size of the catalogue.
const NumCategories = int(numCategories)

// Kind groups categories by what a hit means.
type Kind uint8

const (
	KindRestricted    Kind = iota // illegal content (IWF, CTIRU)
	KindInappropriate             // UKSIC inappropriate content
	KindBypass                    // a tool to get around the filter
	KindProbe                     // automatic probe, not a person's action
	KindPolicy                    // the school's own policy
	KindMarker                    // marks names for other handling; never blocked
)

func (k Kind) String() string {
	switch k {
	case KindRestricted:
		return "restricted"
	case KindInappropriate:
		return "inappropriate"
	case KindBypass:
		return "bypass"
	case KindProbe:
		return "probe"
	case KindPolicy:
		return "policy"
	case KindMarker:
		return "marker"
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Severity orders how urgent a hit is.
type Severity uint8

const (
	SeverityInfo Severity = iota
	SeverityLow
	SeverityMedium
	SeverityHigh
	SeverityCritical
)

var severityNames = [...]string{"info", "low", "medium", "high", "critical"}

func (s Severity) String() string {
	if int(s) < len(severityNames) {
		return severityNames[s]
	}
	return fmt.Sprintf("severity(%d)", s)
}

// ParseSeverity reads a severity name.
func ParseSeverity(s string) (Severity, error) {
	for i, n := range severityNames {
		if strings.EqualFold(s, n) {
			return Severity(i), nil
		}
	}
	return 0, fmt.Errorf("unknown severity %q (want one of %s)", s, strings.Join(severityNames[:], ", "))
}

// MarshalText and UnmarshalText let severities appear in YAML and JSON by name.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Route names who is told about a hit by default.
type Route string

const (
	RouteDSL         Route = "dsl"
	RouteIT          Route = "it"
	RouteHeadteacher Route = "headteacher"
	RouteNone        Route = "none" // counted, never reported
)

// CategoryInfo describes a catalogue entry and its default handling.
type CategoryInfo struct {
	Name        string   // config and log name
	Title       string   // plain words for the block page and digests
	Kind        Kind     // what a hit means
	Severity    Severity // default severity
	Route       Route    // default report route
	Description string   // one line, for the example config and docs
}

var catalogue = [numCategories]CategoryInfo{
	IWF:   {"iwf", "a site on the IWF list", KindRestricted, SeverityCritical, RouteDSL, "IWF child sexual abuse content list (operator-supplied, restricted)"},
	CTIRU: {"ctiru", "a site on the police terrorism list", KindRestricted, SeverityCritical, RouteDSL, "police-assessed unlawful terrorist content, CTIRU (operator-supplied, restricted)"},

	Discrimination: {"discrimination", "discrimination", KindInappropriate, SeverityHigh, RouteDSL, "promotes unjust treatment of people with protected characteristics"},
	Drugs:          {"drugs", "drugs and substance abuse", KindInappropriate, SeverityMedium, RouteDSL, "displays or promotes illegal drug or substance use"},
	Extremism:      {"extremism", "extremism", KindInappropriate, SeverityHigh, RouteDSL, "promotes terrorism, terrorist ideologies, violence or intolerance"},
	Gambling:       {"gambling", "gambling", KindInappropriate, SeverityMedium, RouteDSL, "enables gambling"},
	Hate:           {"hate", "hate speech", KindInappropriate, SeverityHigh, RouteDSL, "expresses hate or encourages violence towards a person or group"},
	Malware:        {"malware", "malware and hacking", KindInappropriate, SeverityHigh, RouteIT, "hosts malicious content or compromises systems"},
	Phishing:       {"phishing", "phishing and scams", KindInappropriate, SeverityMedium, RouteIT, "steals credentials or money by deception"},
	Misinformation: {"misinformation", "misinformation", KindInappropriate, SeverityLow, RouteDSL, "spreads false or misleading information intended to deceive"},
	Piracy:         {"piracy", "piracy and copyright theft", KindInappropriate, SeverityLow, RouteDSL, "illegal provision of copyrighted material"},
	Pornography:    {"pornography", "pornography", KindInappropriate, SeverityHigh, RouteDSL, "displays sexual acts or explicit images"},
	SelfHarm:       {"self-harm", "self-harm and suicide", KindInappropriate, SeverityCritical, RouteDSL, "promotes or displays self-harm, suicide or eating disorders"},
	Violence:       {"violence", "violence", KindInappropriate, SeverityHigh, RouteDSL, "displays or promotes physical force intended to hurt or kill"},

	VPN:          {"vpn", "a VPN service", KindBypass, SeverityHigh, RouteDSL, "VPN services used to get around the filter"},
	WebProxy:     {"web-proxy", "a web proxy", KindBypass, SeverityHigh, RouteDSL, "web proxies and anonymisers used to get around the filter"},
	DoH:          {"doh", "an encrypted DNS service", KindBypass, SeverityMedium, RouteDSL, "DNS-over-HTTPS/TLS resolvers that skip the school's DNS"},
	Tor:          {"tor", "the Tor network", KindBypass, SeverityHigh, RouteDSL, "Tor Project and Tor gateways"},
	PrivateRelay: {"private-relay", "iCloud Private Relay", KindBypass, SeverityLow, RouteDSL, "iCloud Private Relay endpoints"},

	Canary: {"dns-canary", "an automatic DNS probe", KindProbe, SeverityInfo, RouteNone, "names browsers and systems query on their own (DoH canary, DDR)"},

	SearchEngine: {"search-engine", "a search engine", KindMarker, SeverityInfo, RouteNone, "search engines rewritten to their safe-search versions (a marker, never blocked)"},

	SocialMedia: {"social-media", "social media", KindPolicy, SeverityLow, RouteDSL, "social networks"},
	Games:       {"games", "online games", KindPolicy, SeverityLow, RouteDSL, "online games"},
	Streaming:   {"streaming", "video and music streaming", KindPolicy, SeverityLow, RouteDSL, "video and audio streaming"},
	Dating:      {"dating", "dating", KindPolicy, SeverityMedium, RouteDSL, "dating and hook-up sites"},
	Chat:        {"chat", "chat and messaging", KindPolicy, SeverityLow, RouteDSL, "chat rooms and web messaging"},
	AI:          {"ai", "AI chatbots", KindPolicy, SeverityLow, RouteDSL, "generative AI chatbots"},
}

var categoryByName = func() map[string]Category {
	m := make(map[string]Category, numCategories)
	for i := range catalogue {
		m[catalogue[i].Name] = Category(i)
	}
	return m
}()

// Info returns the catalogue entry of c.
func (c Category) Info() CategoryInfo {
	if int(c) < len(catalogue) {
		return catalogue[c]
	}
	// Not in the catalogue: a list bit (see FirstListBit), never restricted.
	return CategoryInfo{Name: fmt.Sprintf("category(%d)", c), Kind: KindMarker, Route: RouteNone}
}

func (c Category) String() string { return c.Info().Name }

// Restricted reports whether c is in the restricted (illegal content) tier.
func (c Category) Restricted() bool { return c.Info().Kind == KindRestricted }

// Bypass reports whether c is a filter-bypass category.
func (c Category) Bypass() bool { return c.Info().Kind == KindBypass }

// MarshalText and UnmarshalText let categories appear in YAML and JSON by name.
func (c Category) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

func (c *Category) UnmarshalText(b []byte) error {
	v, err := ParseCategory(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// ParseCategory looks a category up by name.
func ParseCategory(name string) (Category, error) {
	if c, ok := categoryByName[strings.ToLower(strings.TrimSpace(name))]; ok {
		return c, nil
	}
	return 0, fmt.Errorf("unknown category %q (see `gatehouse config example` for the catalogue)", name)
}

// Categories lists the whole catalogue in order.
func Categories() []Category {
	out := make([]Category, numCategories)
	for i := range out {
		out[i] = Category(i)
	}
	return out
}

// CategorySet is a set of categories as a bitset.
type CategorySet uint64

// SetOf builds a set.
func SetOf(cs ...Category) CategorySet {
	var s CategorySet
	for _, c := range cs {
		s |= 1 << c
	}
	return s
}

// Has reports whether c is in s.
func (s CategorySet) Has(c Category) bool { return s&(1<<c) != 0 }

// Add returns s with c added.
func (s CategorySet) Add(c Category) CategorySet { return s | 1<<c }

// Len counts the members.
func (s CategorySet) Len() int { return bits.OnesCount64(uint64(s)) }

// Slice lists the members in catalogue order.
func (s CategorySet) Slice() []Category {
	out := make([]Category, 0, s.Len())
	for v := uint64(s); v != 0; v &= v - 1 {
		out = append(out, Category(bits.TrailingZeros64(v)))
	}
	return out
}

func (s CategorySet) String() string {
	names := make([]string, 0, s.Len())
	for _, c := range s.Slice() {
		names = append(names, c.String())
	}
	return strings.Join(names, ",")
}

// Restricted is the set of restricted-tier categories.
var Restricted = SetOf(IWF, CTIRU)

// SetOfKind returns every category of kind k.
func SetOfKind(k Kind) CategorySet {
	var s CategorySet
	for i := range catalogue {
		if catalogue[i].Kind == k {
			s = s.Add(Category(i))
		}
	}
	return s
}
