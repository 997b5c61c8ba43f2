package identity

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Lease file formats.
const (
	FormatISC     = "isc"     // ISC dhcpd's dhcpd.leases
	FormatKea     = "kea"     // Kea's memfile CSV (kea-leases4.csv, kea-leases6.csv)
	FormatDnsmasq = "dnsmasq" // dnsmasq's dnsmasq.leases
)

// leaseNever is when a lease that never ends ("ends never", dnsmasq's 0)
// ends: far off, but within what time.Time.UnixNano can count.
var leaseNever = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)

// Lease is one address a DHCP server has handed out.
type Lease struct {
	Addr     netip.Addr
	MAC      string // lower case with colons; "" when the file has none (DHCPv6)
	Hostname string // "" when the client sent none
	Expires  time.Time
	Line     int // where the lease ends in its file (the last word on it)
}

// LeaseError is a line of a lease file that could not be read.
type LeaseError struct {
	File string
	Line int
	Msg  string
}

func (e LeaseError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// maxLeaseErrors bounds the errors kept per read (the rest are counted).
const maxLeaseErrors = 20

// ParseLeases reads a lease file's contents in format. It returns the
// leases current in the file (a later entry for an address replaces an
// earlier one; released, expired and declined leases are left out, as are
// leases ended at now) and the lines it could not read, at most 20 and a
// count of the rest. It never panics.
func ParseLeases(format, file string, data []byte, now time.Time) ([]Lease, []error, int) {
	p := &leaseParser{file: file, now: now, byAddr: map[netip.Addr]int{}}
	switch format {
	case FormatISC:
		p.isc(data)
	case FormatKea:
		p.kea(data)
	case FormatDnsmasq:
		p.dnsmasq(data)
	default:
		p.errf(0, "unknown lease file format %q (want isc, kea or dnsmasq)", format)
	}
	out := p.leases[:0]
	for _, l := range p.leases {
		if l.Addr.IsValid() && l.Expires.After(now) {
			out = append(out, l)
		}
	}
	return out, p.errs, p.more
}

type leaseParser struct {
	file   string
	now    time.Time
	leases []Lease
	byAddr map[netip.Addr]int
	errs   []error
	more   int
}

func (p *leaseParser) errf(line int, format string, args ...any) {
	if len(p.errs) >= maxLeaseErrors {
		p.more++
		return
	}
	p.errs = append(p.errs, LeaseError{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// put records l, replacing an earlier lease of its address; a lease
// without an expiry (Addr invalid) removes it.
func (p *leaseParser) put(l Lease) {
	if i, ok := p.byAddr[l.Addr]; ok {
		p.leases[i] = l
		return
	}
	p.byAddr[l.Addr] = len(p.leases)
	p.leases = append(p.leases, l)
}

// drop forgets a's lease (released, expired, declined).
func (p *leaseParser) drop(a netip.Addr) {
	if i, ok := p.byAddr[a]; ok {
		p.leases[i].Addr = netip.Addr{} // left out by ParseLeases
		delete(p.byAddr, a)
	}
}

// cleanHost keeps a host name readable and short: printable ASCII and
// non-ASCII letters only, at most 63 bytes.
func cleanHost(s string) string {
	s = strings.TrimSpace(s)
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '"' || r == '\\' {
			return -1
		}
		return r
	}, s)
	if len(s) > 63 {
		s = s[:63]
	}
	return s
}

// isc reads dhcpd.leases: "lease ADDR { ... }" blocks with "ends",
// "binding state", "hardware ethernet" and "client-hostname" statements.
func (p *leaseParser) isc(data []byte) {
	tk := &iscTokens{data: data, line: 1}
	for {
		w, line, ok := tk.next()
		if !ok {
			return
		}
		if w != "lease" {
			tk.skipStatement(w)
			continue
		}
		addrTok, aline, _ := tk.next()
		a, err := netip.ParseAddr(addrTok)
		if err != nil || !a.Is4() {
			p.errf(aline, "lease: invalid IPv4 address %q", addrTok)
			tk.skipStatement(addrTok)
			continue
		}
		if open, oline, _ := tk.next(); open != "{" {
			p.errf(oline, "lease %s: want {", a)
			continue
		}
		l := Lease{Addr: a}
		state, ends, hasEnds := "active", time.Time{}, false
		closed := false
		for !closed {
			stmt, sline, ok := tk.statement()
			if !ok {
				p.errf(line, "lease %s: no closing }", a)
				return
			}
			if len(stmt) == 1 && stmt[0] == "}" {
				l.Line = sline
				closed = true
				break
			}
			switch {
			case len(stmt) >= 2 && stmt[0] == "ends":
				if stmt[1] == "never" {
					ends, hasEnds = leaseNever, true
				} else if t, err := iscTime(stmt[1:]); err == nil {
					ends, hasEnds = t, true
				} else {
					p.errf(sline, "lease %s: ends: %v", a, err)
				}
			case len(stmt) >= 3 && stmt[0] == "binding" && stmt[1] == "state":
				state = stmt[2]
			case len(stmt) >= 3 && stmt[0] == "hardware" && stmt[1] == "ethernet":
				l.MAC = NormalizeMAC(stmt[2])
				if l.MAC == "" {
					p.errf(sline, "lease %s: invalid MAC address %q", a, stmt[2])
				}
			case len(stmt) >= 2 && stmt[0] == "client-hostname":
				l.Hostname = cleanHost(stmt[1])
			}
		}
		if state != "active" && state != "backup" && state != "static" {
			p.drop(a)
			continue
		}
		if !hasEnds {
			p.errf(l.Line, "lease %s: no ends statement", a)
			continue
		}
		l.Expires = ends
		p.put(l)
	}
}

// iscTime reads "W YYYY/MM/DD HH:MM:SS" (UTC) or "epoch N".
func iscTime(f []string) (time.Time, error) {
	if len(f) >= 2 && f[0] == "epoch" {
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || n < 0 {
			return time.Time{}, fmt.Errorf("invalid epoch time %q", f[1])
		}
		return time.Unix(n, 0), nil
	}
	if len(f) < 3 {
		return time.Time{}, errors.New("want W YYYY/MM/DD HH:MM:SS")
	}
	t, err := time.Parse("2006/01/02 15:04:05", f[1]+" "+f[2])
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid time %q", f[1]+" "+f[2])
	}
	return t, nil
}

// iscTokens splits dhcpd.leases into words, quoted strings, "{", "}" and
// ";", skipping # comments.
type iscTokens struct {
	data []byte
	pos  int
	line int
}

func (t *iscTokens) next() (string, int, bool) {
	d := t.data
	for t.pos < len(d) {
		c := d[t.pos]
		switch {
		case c == '\n':
			t.line++
			t.pos++
		case c == ' ' || c == '\t' || c == '\r':
			t.pos++
		case c == '#':
			for t.pos < len(d) && d[t.pos] != '\n' {
				t.pos++
			}
		case c == '{' || c == '}' || c == ';':
			t.pos++
			return string(c), t.line, true
		case c == '"':
			line := t.line
			var b strings.Builder
			t.pos++
			for t.pos < len(d) && d[t.pos] != '"' {
				if d[t.pos] == '\\' && t.pos+1 < len(d) {
					t.pos++
				}
				if d[t.pos] == '\n' {
					t.line++
				}
				b.WriteByte(d[t.pos])
				t.pos++
			}
			t.pos++ // the closing quote (or past the end)
			return b.String(), line, true
		default:
			start := t.pos
			for t.pos < len(d) && !bytes.ContainsRune([]byte(" \t\r\n{};#\""), rune(d[t.pos])) {
				t.pos++
			}
			return string(d[start:t.pos]), t.line, true
		}
	}
	return "", t.line, false
}

// statement reads words up to ";" (not returned) or a lone "}".
func (t *iscTokens) statement() ([]string, int, bool) {
	var out []string
	first := 0
	for {
		w, line, ok := t.next()
		if !ok {
			return out, line, false
		}
		if first == 0 {
			first = line
		}
		switch w {
		case ";":
			return out, first, true
		case "}":
			if len(out) == 0 {
				return []string{"}"}, line, true
			}
			return out, first, true // a missing ";" before "}"
		case "{":
			t.skipBlock()
			return out, first, true
		}
		out = append(out, w)
	}
}

// skipStatement skips a top-level statement that is not a lease (its
// first word already read): up to ";" or a whole { } block.
func (t *iscTokens) skipStatement(first string) {
	if first == ";" {
		return
	}
	if first == "{" {
		t.skipBlock()
		return
	}
	for {
		w, _, ok := t.next()
		if !ok || w == ";" {
			return
		}
		if w == "{" {
			t.skipBlock()
			return
		}
	}
}

func (t *iscTokens) skipBlock() {
	depth := 1
	for depth > 0 {
		w, _, ok := t.next()
		if !ok {
			return
		}
		switch w {
		case "{":
			depth++
		case "}":
			depth--
		}
	}
}

// kea reads Kea's memfile CSV by its header (v4: address, hwaddr, expire,
// hostname, state; v6 the same names); state 0 is a current lease.
func (p *leaseParser) kea(data []byte) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	col := map[string]int{}
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(s) == "" {
			continue
		}
		f := strings.Split(s, ",")
		if len(col) == 0 {
			for i, name := range f {
				col[strings.TrimSpace(name)] = i
			}
			for _, need := range []string{"address", "expire"} {
				if _, ok := col[need]; !ok {
					p.errf(line, "header has no %q column (is this a Kea memfile CSV?)", need)
					return
				}
			}
			continue
		}
		get := func(name string) string {
			if i, ok := col[name]; ok && i < len(f) {
				return strings.ReplaceAll(strings.TrimSpace(f[i]), "&#x2c", ",")
			}
			return ""
		}
		a, err := netip.ParseAddr(get("address"))
		if err != nil {
			p.errf(line, "invalid address %q", get("address"))
			continue
		}
		exp, err := strconv.ParseInt(get("expire"), 10, 64)
		if err != nil || exp < 0 {
			p.errf(line, "invalid expire %q", get("expire"))
			continue
		}
		if st := get("state"); st != "" && st != "0" {
			p.drop(a)
			continue
		}
		l := Lease{Addr: a.Unmap(), Hostname: cleanHost(strings.TrimSuffix(get("hostname"), ".")), Expires: time.Unix(exp, 0), Line: line}
		if hw := get("hwaddr"); hw != "" {
			if l.MAC = NormalizeMAC(hw); l.MAC == "" {
				p.errf(line, "invalid hwaddr %q", hw)
			}
		}
		p.put(l)
	}
	if err := sc.Err(); err != nil {
		p.errf(line+1, "%v", err)
	}
}

// dnsmasq reads dnsmasq.leases: "EXPIRY MAC ADDR HOSTNAME CLIENT-ID" (0:
// never expires; "*" for no host name); after a "duid" line, DHCPv6
// leases "EXPIRY IAID ADDR HOSTNAME CLIENT-ID" (no MAC).
func (p *leaseParser) dnsmasq(data []byte) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line, v6 := 0, false
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if f[0] == "duid" {
			v6 = true
			continue
		}
		if len(f) < 4 {
			p.errf(line, "want EXPIRY MAC ADDRESS HOSTNAME CLIENT-ID, got %d fields", len(f))
			continue
		}
		exp, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || exp < 0 {
			p.errf(line, "invalid expiry %q", f[0])
			continue
		}
		a, err := netip.ParseAddr(f[2])
		if err != nil {
			p.errf(line, "invalid address %q", f[2])
			continue
		}
		l := Lease{Addr: a.Unmap(), Expires: time.Unix(exp, 0), Line: line}
		if exp == 0 {
			l.Expires = leaseNever
		}
		if !v6 {
			if l.MAC = NormalizeMAC(f[1]); l.MAC == "" {
				p.errf(line, "invalid MAC address %q", f[1])
			}
		}
		if f[3] != "*" {
			l.Hostname = cleanHost(f[3])
		}
		p.put(l)
	}
	if err := sc.Err(); err != nil {
		p.errf(line+1, "%v", err)
	}
}

// LeaseFile is a lease file to follow.
type LeaseFile struct {
	Path   string
	Format string
}

// Leases follows DHCP lease files and keeps the table's lease mappings
// in step with them: each file is polled (modification time and size,
// and a SHA-256 of the contents every 15th poll, as the config watcher
// does) and re-read when it changes; its leases are set, and the
// mappings of leases that left the file are removed. A lease's host name
// (else its MAC) becomes the device's name; a static device listed by
// MAC (StaticMACs) keeps its static name.
type Leases struct {
	Table      *Table
	Files      []LeaseFile
	StaticMACs map[string]string // normalised MAC → static device name
	Log        *slog.Logger
	Now        func() time.Time

	mu    sync.Mutex // Poll and Reconfigure; Files and StaticMACs change under it
	state []fileState
}

type fileState struct {
	mod   time.Time
	size  int64
	sum   [32]byte
	polls int
	read  bool
	count int      // leases taken at the last read
	held  [32]byte // contents with under half the leases, not taken yet (heldBack)
}

// session names a lease mapping by its file, so a file's re-read removes
// only its own.
func leaseSession(file string) string { return "lease:" + file }

// Poll reads every file that changed and updates the table. It returns
// the problems found (bad lines, unreadable files), each naming file and
// line.
func (l *Leases) Poll() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.poll()
}

// Reconfigure replaces the files and the static devices' MACs (a config
// reload) and reads the files at once. A file still listed in the same
// format keeps its mappings throughout (re-read if the static names
// changed); the mappings of a file no longer listed, or listed in another
// format, end or are replaced by its new reading.
func (l *Leases) Reconfigure(files []LeaseFile, staticMACs map[string]string) []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	sameMACs := maps.Equal(staticMACs, l.StaticMACs)
	old := map[LeaseFile]fileState{}
	for i, f := range l.Files {
		if i < len(l.state) {
			old[f] = l.state[i]
		}
	}
	state := make([]fileState, len(files))
	keep := map[string]bool{}
	for i, f := range files {
		keep[leaseSession(f.Path)] = true
		if st, ok := old[f]; ok && sameMACs {
			state[i] = st
		}
	}
	l.Files, l.StaticMACs, l.state = files, staticMACs, state
	l.Table.RemoveSource(SourceLease, func(m *Mapping) bool { return keep[m.Session] })
	return l.poll()
}

func (l *Leases) poll() []error {
	if l.Now == nil {
		l.Now = time.Now
	}
	if l.Log == nil {
		l.Log = slog.New(slog.DiscardHandler)
	}
	if len(l.state) != len(l.Files) {
		l.state = make([]fileState, len(l.Files))
	}
	var problems []error
	for i, f := range l.Files {
		st := &l.state[i]
		fi, err := os.Stat(f.Path)
		if err != nil {
			if st.read {
				// The file is gone: its leases are no longer known.
				l.Table.RemoveSource(SourceLease, func(m *Mapping) bool { return m.Session != leaseSession(f.Path) })
				*st = fileState{}
			}
			problems = append(problems, fmt.Errorf("%s: %w", f.Path, err))
			continue
		}
		st.polls++
		if st.read && fi.ModTime().Equal(st.mod) && fi.Size() == st.size && st.polls%15 != 0 {
			continue
		}
		data, err := os.ReadFile(f.Path)
		if err != nil {
			problems = append(problems, fmt.Errorf("%s: %w", f.Path, err))
			continue
		}
		sum := sha256.Sum256(data)
		st.mod, st.size = fi.ModTime(), fi.Size()
		if st.read && sum == st.sum {
			continue
		}
		now := l.Now()
		leases, errs, more := ParseLeases(f.Format, f.Path, data, now)
		problems = append(problems, errs...)
		if more > 0 {
			problems = append(problems, fmt.Errorf("%s: %d more bad lines", f.Path, more))
		}
		if st.read && heldBack(len(leases), st.count, sum, &st.held) {
			st.mod = time.Time{} // read again at the next poll
			problems = append(problems, fmt.Errorf("%s: %d leases, previously %d: the leases read before are kept until the file reads the same again (it may be being written)",
				f.Path, len(leases), st.count))
			continue
		}
		l.apply(f.Path, leases)
		st.sum, st.read, st.count = sum, true, len(leases)
		l.Log.Info("dhcp leases read", "file", f.Path, "leases", len(leases), "bad_lines", len(errs)+more)
	}
	return problems
}

// apply sets the leases of file and removes its mappings for addresses no
// longer leased.
func (l *Leases) apply(file string, leases []Lease) {
	session := leaseSession(file)
	current := make(map[netip.Addr]bool, len(leases))
	ms := make([]Mapping, 0, len(leases))
	for _, le := range leases {
		name := le.Hostname
		if s, ok := l.StaticMACs[le.MAC]; ok && le.MAC != "" {
			name = s
		}
		if name == "" {
			name = le.MAC
		}
		if name == "" {
			continue
		}
		current[le.Addr] = true
		ms = append(ms, Mapping{Addr: le.Addr, Source: SourceLease, Session: session, Device: name, MAC: le.MAC, Expires: le.Expires})
	}
	l.Table.RemoveSource(SourceLease, func(m *Mapping) bool { return m.Session != session || current[m.Addr] })
	l.Table.SetAll(ms)
}

// Run polls every interval until ctx is done, logging problems (each
// file's once until it changes).
func (l *Leases) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	seen := map[string]bool{}
	for {
		next := map[string]bool{}
		for _, err := range l.Poll() {
			msg := err.Error()
			next[msg] = true
			if !seen[msg] {
				l.Log.Warn("dhcp lease file", "problem", msg)
			}
		}
		seen = next
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
