package blocklists

import (
	"fmt"
	"net/netip"
	"strings"
)

// Format is the syntax of a list file.
type Format string

const (
	FormatAuto       Format = "auto"       // detect from the first meaningful lines
	FormatDomains    Format = "domains"    // one domain per line (blocks its subdomains), or host/path (a URL prefix)
	FormatHosts      Format = "hosts"      // "0.0.0.0 a.example b.example"
	FormatAdblock    Format = "adblock"    // "||d^", "@@||d^", "|d^" (exact)
	FormatWildcard   Format = "wildcard"   // "*.d" (subdomains and d itself)
	FormatSquidGuard Format = "squidguard" // directory of category dirs with domains/urls files
	FormatURLs       Format = "urls"       // "host/path" prefixes, for the proxy
	FormatIPs        Format = "ips"        // IP addresses and CIDR prefixes
	FormatSHA256     Format = "sha256"     // hex SHA-256 of normalised hosts or host/path URLs
)

var formats = []Format{FormatAuto, FormatDomains, FormatHosts, FormatAdblock, FormatWildcard, FormatSquidGuard, FormatURLs, FormatIPs, FormatSHA256}

// ParseFormat reads a format name; "" means auto.
func ParseFormat(s string) (Format, error) {
	if s == "" {
		return FormatAuto, nil
	}
	for _, f := range formats {
		if strings.EqualFold(s, string(f)) {
			return f, nil
		}
	}
	names := make([]string, len(formats))
	for i, f := range formats {
		names[i] = string(f)
	}
	return "", fmt.Errorf("unknown list format %q (want one of %s)", s, strings.Join(names, ", "))
}

// Mode says how a domain entry matches.
type Mode uint8

const (
	ModeSubtree       Mode = iota // the name and all its subdomains
	ModeExact                     // the name only
	ModeExceptSubtree             // exception: unblocks the name and its subdomains
	ModeExceptExact               // exception: unblocks the name only
)

// Sink receives the entries of a parsed list. Byte slices are only valid
// during the call; domains arrive normalised (lower-case ASCII, IDN as
// punycode, no trailing dot) and URLs as normalised "host/path".
type Sink interface {
	Domain(name []byte, mode Mode)
	URL(hostPath []byte, exception bool)
	Prefix(p netip.Prefix)
	Hash(sum [32]byte)
}

// LineError is one rejected line of a list.
type LineError struct {
	File   string
	Line   int
	Text   string // the line, shortened
	Reason string
}

func (e LineError) Error() string {
	if e.Reason == "" && e.Text == "" { // a restricted list's (withheld)
		return fmt.Sprintf("%s:%d: invalid line (restricted list: not shown)", e.File, e.Line)
	}
	return fmt.Sprintf("%s:%d: %s: %q", e.File, e.Line, e.Reason, e.Text)
}

// MaxLineErrors is how many rejected lines a ParseResult keeps as samples.
const MaxLineErrors = 5

// ParseResult summarises one parsed list file.
type ParseResult struct {
	File    string
	Format  Format // the format used (detected when asked for auto)
	Lines   int    // lines read
	Entries int    // entries passed to the sink
	Invalid int    // lines rejected
	Errors  []LineError
}
