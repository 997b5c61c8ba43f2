package blocklists

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"unicode/utf8"
)

const (
	readBufSize = 64 << 10 // read buffer; also the longest line accepted
	sniffSize   = 4 << 10  // bytes checked for HTML and binary content
	detectLines = 50       // meaningful lines read to detect the format
	shownText   = 80       // bytes of a rejected line kept in a LineError
)

// Whole-list failures. Parse wraps them with the file name.
var (
	ErrHTML           = errors.New("looks like an HTML page, not a list")
	ErrBinary         = errors.New("binary data, not a text list")
	ErrNoValidEntries = errors.New("no valid entries")
)

// Reasons a line is rejected.
var (
	errLineTooLong   = fmt.Errorf("line longer than %d bytes", readBufSize)
	errUnsupported   = errors.New("unsupported adblock rule")
	errNotIP         = errors.New("not an IP address or CIDR prefix")
	errIPZone        = errors.New("IP address with a zone")
	errNotHash       = errors.New("not a 64-character hex SHA-256")
	errHostsNoIP     = errors.New("hosts line must start with an IP address")
	errHostsNoName   = errors.New("hosts line has no host name")
	errURLException  = errors.New("URL exceptions are not supported")
	errTrailingField = errors.New("unexpected text after the entry")
)

// ParseFile parses the list file at path; see Parse.
func ParseFile(path string, f Format, sink Sink) (ParseResult, error) {
	fh, err := os.Open(path)
	if err != nil {
		return ParseResult{File: path, Format: f}, err
	}
	defer fh.Close()
	return Parse(fh, path, f, sink)
}

// Parse reads a list in format f (FormatAuto or "" to detect it) and passes
// its entries to sink. file names the list in errors. Gzip data is unpacked
// whatever the name. Bad lines are counted and sampled in the result; the
// error is for whole-list failures: unreadable or corrupt data, an HTML page
// or binary data instead of a list, or lines but no valid entry. An empty
// list is not an error.
//
// Formats:
//   - domains: "example.com" blocks the name and its subdomains; "*.example.com"
//     and ".example.com" mean the same. A "host/path" line is a URL prefix,
//     as in urls, so one list can hold both, as a group's allow: and deny:
//     entries do.
//   - wildcard: "*.example.com" blocks example.com and its subdomains (as in
//     hagezi's lists); plain names are accepted as in domains.
//   - hosts: "0.0.0.0 a.example b.example"; each name blocks its subdomains
//     too, like the same list in domains format. localhost and similar
//     names are skipped, not counted as invalid.
//   - adblock: "||d^" (subtree), "|d^" (exact), "@@" for exceptions, "$important"
//     allowed; other modifiers, cosmetic rules, paths and wildcards are
//     rejected as unsupported.
//   - urls: squidGuard "host/path" prefixes, normalised as by NormalizeURL; a
//     line without a path is passed as the bare host and covers the whole site.
//   - ips: addresses and CIDR prefixes.
//   - sha256: 64 hex digits, the SHA-256 of a normalised host or host/path.
//
// Blank lines, "#" comments, "!" comments in adblock lists, trailing
// " # comments", a UTF-8 byte order mark, CRLF line ends, upper case and
// trailing dots are all accepted.
func Parse(r io.Reader, file string, f Format, sink Sink) (ParseResult, error) {
	if f == "" {
		f = FormatAuto
	}
	res := ParseResult{File: file, Format: f}
	switch f {
	case FormatAuto, FormatDomains, FormatHosts, FormatAdblock, FormatWildcard, FormatURLs, FormatIPs, FormatSHA256:
	case FormatSquidGuard:
		return res, fmt.Errorf("%s: squidguard is a directory layout, not a file format; use ScanSquidGuard", file)
	default:
		return res, fmt.Errorf("%s: unknown list format %q", file, f)
	}

	br := bufio.NewReaderSize(r, readBufSize)
	gzipped := false
	if head, _ := br.Peek(2); len(head) == 2 && head[0] == 0x1f && head[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return res, fmt.Errorf("%s: corrupt gzip data: %w", file, err)
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, readBufSize)
		gzipped = true
	}
	readErr := func(err error, line int) error {
		if gzipped {
			return fmt.Errorf("%s: gzip data truncated or corrupt (after line %d): %w", file, line, err)
		}
		return fmt.Errorf("%s: read error after line %d: %w", file, line, err)
	}

	head, err := br.Peek(sniffSize)
	if err != nil && err != io.EOF {
		return res, readErr(err, 0)
	}
	if bytes.HasPrefix(head, []byte("\xef\xbb\xbf")) {
		br.Discard(3)
		head = head[3:]
	}
	if err := sniff(head); err != nil {
		return res, fmt.Errorf("%s: %w", file, err)
	}
	if f == FormatAuto {
		buf, err := br.Peek(readBufSize)
		if err != nil && err != io.EOF {
			return res, readErr(err, 0)
		}
		f = detect(buf, err == io.EOF)
		res.Format = f
	}

	p := parser{file: file, format: f, sink: sink, res: &res}
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			res.Lines++
			p.bad(line, errLineTooLong)
			for err == bufio.ErrBufferFull {
				_, err = br.ReadSlice('\n')
			}
			if err == nil {
				continue
			}
			line = nil
		}
		if err != nil && err != io.EOF {
			return res, readErr(err, res.Lines)
		}
		if len(line) > 0 {
			res.Lines++
			p.parseLine(line)
		}
		if err != nil {
			break
		}
	}
	if res.Entries == 0 && res.Invalid > 0 {
		return res, &NoValidEntriesError{Invalid: res.Invalid, First: res.Errors[0]}
	}
	return res, nil
}

// NoValidEntriesError is Parse's error for a list whose lines were all
// rejected. It matches ErrNoValidEntries (errors.Is) and names the first
// rejected line by file:line with the reason, which can quote part of the
// line; Withheld drops the reason (for restricted lists).
type NoValidEntriesError struct {
	Invalid int
	First   LineError
}

func (e *NoValidEntriesError) Error() string {
	where := fmt.Sprintf("line %d", e.First.Line)
	if e.First.File != "" {
		where = fmt.Sprintf("%s:%d", e.First.File, e.First.Line)
	}
	if e.First.Reason == "" {
		return fmt.Sprintf("%v (%d invalid lines; first: %s)", ErrNoValidEntries, e.Invalid, where)
	}
	return fmt.Sprintf("%v (%d invalid lines; first: %s: %s)", ErrNoValidEntries, e.Invalid, where, e.First.Reason)
}

func (e *NoValidEntriesError) Unwrap() error { return ErrNoValidEntries }

// withholdLines returns err with no part of a list's lines in it: a
// NoValidEntriesError keeps only the first bad line's file:line. Every
// error a restricted (IWF/CTIRU) list's load or download returns passes
// through it, so its logs, status and /healthz never quote the list.
func withholdLines(err error) error {
	var nv *NoValidEntriesError
	if !errors.As(err, &nv) {
		return err
	}
	w := *nv
	w.First = LineError{File: nv.First.File, Line: nv.First.Line}
	return &w
}

// withholdLineText drops the text and reason of a restricted list's
// rejected lines, keeping where they are, so nothing that reads the
// index's list info can show them.
func withholdLineText(errs []LineError) []LineError {
	out := make([]LineError, len(errs))
	for i, e := range errs {
		out[i] = LineError{File: e.File, Line: e.Line}
	}
	return out
}

// sniff rejects data that is clearly not a text list.
func sniff(head []byte) error {
	switch {
	case bytes.HasPrefix(head, []byte("\xff\xfe")), bytes.HasPrefix(head, []byte("\xfe\xff")):
		return fmt.Errorf("%w: UTF-16 text is not supported; convert the list to UTF-8", ErrBinary)
	case bytes.HasPrefix(head, []byte("PK\x03\x04")):
		return fmt.Errorf("%w: a zip archive; unpack it or use gzip", ErrBinary)
	case bytes.HasPrefix(head, []byte("BZh")) && len(head) > 3 && head[3] >= '1' && head[3] <= '9':
		return fmt.Errorf("%w: bzip2 data; only gzip is unpacked", ErrBinary)
	case bytes.HasPrefix(head, []byte("\xfd7zXZ\x00")):
		return fmt.Errorf("%w: xz data; only gzip is unpacked", ErrBinary)
	case bytes.HasPrefix(head, []byte("\x28\xb5\x2f\xfd")):
		return fmt.Errorf("%w: zstd data; only gzip is unpacked", ErrBinary)
	}
	text := bytes.TrimLeft(head, " \t\r\n\v\f")
	for _, tag := range []string{"<!doctype", "<html", "<head", "<body", "<!--"} {
		if hasPrefixFold(text, tag) {
			return ErrHTML
		}
	}
	if hasPrefixFold(text, "<?xml") {
		return errors.New("looks like an XML document, not a list")
	}
	if bytes.IndexByte(head, 0) >= 0 {
		return fmt.Errorf("%w (NUL bytes)", ErrBinary)
	}
	// Control characters, or invalid UTF-8 in most of the text.
	var ctl, bad int
	for i := 0; i < len(head); {
		c := head[i]
		if c < utf8.RuneSelf {
			if (c < ' ' && !isSpace(c)) || c == 0x7f {
				ctl++
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(head[i:])
		if r == utf8.RuneError && n == 1 && len(head)-i >= utf8.UTFMax {
			bad++
		}
		i += n
	}
	if ctl*10 > len(head) || (ctl+bad)*3 > len(head) {
		return ErrBinary
	}
	return nil
}

// detect guesses the format from the first meaningful lines of buf. all
// says buf holds the whole list.
func detect(buf []byte, all bool) Format {
	var votes [numVotes]int
	n := 0
	for len(buf) > 0 && n < detectLines {
		line := buf
		i := bytes.IndexByte(buf, '\n')
		if i >= 0 {
			line, buf = buf[:i], buf[i+1:]
		} else if !all {
			break // cut off by the buffer
		} else {
			buf = nil
		}
		line = trimSpace(line)
		if len(line) == 0 {
			continue
		}
		if line[0] == '[' && hasPrefixFold(line, "[adblock") {
			return FormatAdblock
		}
		if line[0] == '#' || line[0] == '!' {
			continue
		}
		votes[classify(trimSpace(cutComment(line)))]++
		n++
	}
	best := voteDomains
	for v := range votes {
		if votes[v] > votes[best] {
			best = v
		}
	}
	// Names and host/path lines mixed (a school's allow or deny list):
	// domains, which reads both, so that the names count in DNS too.
	if best == voteURLs && votes[voteDomains] > 0 {
		best = voteDomains
	}
	// Domain lists may open with IP addresses (UT1 sorts them first):
	// treat the list as addresses only if no names follow in the buffer.
	if best == voteIPs {
		var scratch [maxNameLen + 1]byte
		for len(buf) > 0 {
			line := buf
			if i := bytes.IndexByte(buf, '\n'); i >= 0 {
				line, buf = buf[:i], buf[i+1:]
			} else if !all {
				break
			} else {
				buf = nil
			}
			line = trimSpace(cutComment(trimSpace(line)))
			if len(line) == 0 || line[0] == '#' || line[0] == '!' || classify(line) != voteDomains {
				continue
			}
			if name, err := NormalizeDomain(scratch[:0], line); err == nil && bytes.ContainsFunc(name, isLetter) {
				return FormatDomains
			}
		}
	}
	return voteFormats[best]
}

// Votes in order of preference when counts tie.
const (
	voteAdblock = iota
	voteHosts
	voteWildcard
	voteSHA256
	voteURLs
	voteIPs
	voteDomains
	numVotes
)

var voteFormats = [numVotes]Format{FormatAdblock, FormatHosts, FormatWildcard, FormatSHA256, FormatURLs, FormatIPs, FormatDomains}

// classify says which format a meaningful line looks like.
func classify(line []byte) int {
	switch {
	case bytes.HasPrefix(line, []byte("||")), bytes.HasPrefix(line, []byte("@@")),
		line[0] == '|', line[len(line)-1] == '^':
		return voteAdblock
	case bytes.HasPrefix(line, []byte("*.")):
		return voteWildcard
	}
	if i := bytes.IndexAny(line, " \t"); i >= 0 {
		if _, err := netip.ParseAddr(string(line[:i])); err == nil {
			return voteHosts
		}
		return voteDomains
	}
	if isHash(line) {
		return voteSHA256
	}
	if _, ok := parseIPOrPrefix(line); ok {
		return voteIPs
	}
	if bytes.IndexByte(line, '/') > 0 {
		return voteURLs
	}
	return voteDomains
}

func isLetter(r rune) bool { return r >= 'a' && r <= 'z' }

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && strings.EqualFold(string(b[:len(prefix)]), prefix)
}

// cutComment removes a trailing comment: '#' after white space.
func cutComment(b []byte) []byte {
	for i := 1; i < len(b); i++ {
		j := bytes.IndexByte(b[i:], '#')
		if j < 0 {
			break
		}
		i += j
		if b[i-1] == ' ' || b[i-1] == '\t' {
			return b[:i]
		}
	}
	return b
}

type parser struct {
	file   string
	format Format
	sink   Sink
	res    *ParseResult
	buf    []byte // scratch for normalised names
}

// bad records a rejected line.
func (p *parser) bad(line []byte, err error) {
	p.res.Invalid++
	if len(p.res.Errors) < MaxLineErrors {
		p.res.Errors = append(p.res.Errors, LineError{File: p.file, Line: p.res.Lines, Text: shorten(line), Reason: err.Error()})
	}
}

// parseLine handles one line, with its line end.
func (p *parser) parseLine(raw []byte) {
	line := trimSpace(raw)
	if len(line) == 0 {
		return
	}
	switch line[0] {
	case '#':
		if p.format == FormatAdblock && isCosmetic(line) {
			p.bad(line, errUnsupported)
		}
		return
	case '!':
		if p.format == FormatAdblock {
			return
		}
	case '[':
		if p.format == FormatAdblock && line[len(line)-1] == ']' {
			return // "[Adblock Plus 2.0]"
		}
	}
	entry := line
	if bytes.IndexByte(entry, '#') > 0 {
		entry = trimSpace(cutComment(entry))
	}
	var err error
	switch p.format {
	case FormatDomains, FormatWildcard:
		err = p.domain(entry)
	case FormatHosts:
		err = p.hosts(entry)
	case FormatAdblock:
		err = p.adblock(entry)
	case FormatURLs:
		err = p.url(entry)
	case FormatIPs:
		err = p.ip(entry)
	case FormatSHA256:
		err = p.hash(entry)
	}
	if err != nil {
		p.bad(line, err)
	}
}

func (p *parser) domain(b []byte) error {
	if len(b) > 1 && b[0] == '*' && b[1] == '.' {
		b = b[2:]
	} else if len(b) > 1 && b[0] == '.' {
		b = b[1:]
	}
	if bytes.IndexByte(b, '/') >= 0 {
		return p.url(b) // "host/path": a URL prefix
	}
	name, err := NormalizeDomain(p.buf, b)
	p.buf = name
	if err != nil {
		return err
	}
	p.sink.Domain(name, ModeSubtree)
	p.res.Entries++
	return nil
}

func (p *parser) hosts(b []byte) error {
	addr, rest := nextField(b)
	if !isHostsAddr(addr) {
		return errHostsNoIP
	}
	if len(rest) == 0 {
		return errHostsNoName
	}
	var first error
	for len(rest) > 0 {
		var f []byte
		f, rest = nextField(rest)
		if looksLikeIP(f) {
			continue // "0.0.0.0 0.0.0.0"
		}
		name, err := NormalizeDomain(p.buf, f)
		p.buf = name
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		if skipHostsName(name) {
			continue
		}
		p.sink.Domain(name, ModeSubtree)
		p.res.Entries++
	}
	return first
}

// isHostsAddr reports whether b is the address column of a hosts line.
func isHostsAddr(b []byte) bool {
	switch string(b) {
	case "0.0.0.0", "127.0.0.1", "::", "::1":
		return true
	}
	_, err := netip.ParseAddr(string(b))
	return err == nil
}

func looksLikeIP(b []byte) bool {
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c == '.' || c == ':' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	if bytes.IndexByte(b, ':') < 0 && bytes.Count(b, []byte(".")) != 3 {
		return false
	}
	_, err := netip.ParseAddr(string(b))
	return err == nil
}

// skipHostsName reports names that hosts files map for the system itself.
func skipHostsName(name []byte) bool {
	switch string(name) {
	case "localhost", "localhost.localdomain", "local", "broadcasthost", "localdomain",
		"ip6-localhost", "ip6-loopback", "ip6-localnet", "ip6-mcastprefix",
		"ip6-allnodes", "ip6-allrouters", "ip6-allhosts":
		return true
	}
	return false
}

func nextField(b []byte) (field, rest []byte) {
	i := 0
	for i < len(b) && !isSpace(b[i]) {
		i++
	}
	return b[:i], trimSpace(b[i:])
}

// adblockModifiers are the "$" options that keep a rule a plain domain block.
var adblockModifiers = map[string]bool{"important": true, "all": true, "document": true, "doc": true}

func (p *parser) adblock(b []byte) error {
	if isCosmetic(b) || b[0] == '/' {
		return errUnsupported
	}
	except := false
	if bytes.HasPrefix(b, []byte("@@")) {
		except, b = true, b[2:]
	}
	exact, anchored := false, true
	switch {
	case bytes.HasPrefix(b, []byte("||")):
		b = b[2:]
	case len(b) > 0 && b[0] == '|':
		exact, b = true, b[1:]
	default:
		anchored = false
	}
	if i := bytes.IndexByte(b, '$'); i >= 0 {
		for mod := range strings.SplitSeq(string(b[i+1:]), ",") {
			if !adblockModifiers[strings.TrimSpace(mod)] {
				return errUnsupported
			}
		}
		b = b[:i]
	}
	if n := len(b); n > 0 && b[n-1] == '|' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '^' {
		b = b[:n-1]
	}
	// Unanchored rules are URL substrings; take them as domains only when
	// they look like one.
	if len(b) == 0 || bytes.ContainsAny(b, "*/:^|?=&% \t") || (!anchored && bytes.IndexByte(b, '.') < 0) {
		return errUnsupported
	}
	name, err := NormalizeDomain(p.buf, b)
	p.buf = name
	if err != nil {
		return err
	}
	mode := ModeSubtree
	switch {
	case except && exact:
		mode = ModeExceptExact
	case except:
		mode = ModeExceptSubtree
	case exact:
		mode = ModeExact
	}
	p.sink.Domain(name, mode)
	p.res.Entries++
	return nil
}

// isCosmetic spots element-hiding and scriptlet rules ("##", "#@#", ...).
func isCosmetic(b []byte) bool {
	for i := bytes.IndexByte(b, '#'); i >= 0 && i+1 < len(b); {
		switch b[i+1] {
		case '#':
			return true
		case '@', '?', '$', '%':
			if bytes.IndexByte(b[i+2:], '#') >= 0 {
				return true
			}
		}
		j := bytes.IndexByte(b[i+1:], '#')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return false
}

func (p *parser) url(b []byte) error {
	if bytes.HasPrefix(b, []byte("@@")) {
		return errURLException
	}
	hp, err := appendURL(p.buf, b, true)
	p.buf = hp
	if err != nil {
		return err
	}
	p.sink.URL(hp, false)
	p.res.Entries++
	return nil
}

func (p *parser) ip(b []byte) error {
	if bytes.ContainsAny(b, " \t") {
		return errTrailingField
	}
	pfx, ok := parseIPOrPrefix(b)
	if !ok {
		if bytes.IndexByte(b, '%') >= 0 {
			return errIPZone
		}
		return errNotIP
	}
	p.sink.Prefix(pfx)
	p.res.Entries++
	return nil
}

// parseIPOrPrefix reads "192.0.2.1", "2001:db8::/32" and the like; host
// bits of a prefix are cleared.
func parseIPOrPrefix(b []byte) (netip.Prefix, bool) {
	if bytes.IndexByte(b, '/') >= 0 {
		pfx, err := netip.ParsePrefix(string(b))
		if err != nil {
			return netip.Prefix{}, false
		}
		return pfx.Masked(), true
	}
	a, err := netip.ParseAddr(string(b))
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, a.BitLen()), true
}

func (p *parser) hash(b []byte) error {
	if !isHash(b) {
		return errNotHash
	}
	var sum [32]byte
	hex.Decode(sum[:], b)
	p.sink.Hash(sum)
	p.res.Entries++
	return nil
}

func isHash(b []byte) bool {
	if len(b) != 64 {
		return false
	}
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// shorten returns line for display: at most shownText bytes, with bytes
// that are not printable UTF-8 written as \xNN.
func shorten(line []byte) string {
	line = trimSpace(line)
	cut := len(line) > shownText
	if cut {
		n := shownText
		for n > shownText-utf8.UTFMax && !utf8.RuneStart(line[n]) {
			n--
		}
		line = line[:n]
	}
	var sb strings.Builder
	for i := 0; i < len(line); {
		r, n := utf8.DecodeRune(line[i:])
		if (r == utf8.RuneError && n == 1) || r < ' ' || r == 0x7f {
			fmt.Fprintf(&sb, `\x%02x`, line[i])
		} else {
			sb.Write(line[i : i+n])
		}
		i += n
	}
	if cut {
		sb.WriteString("…")
	}
	return sb.String()
}
