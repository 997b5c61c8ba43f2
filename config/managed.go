package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-filter/gatehouse/internal/atomicfile"
	"go.yaml.in/yaml/v3"
	"golang.org/x/net/publicsuffix"
)

// The managed lists are the allow and deny entries IT makes per group in
// the console. They live in their own file beside the database
// (ManagedFileName), written only by the console, and every load of the
// config (serve, a reload, gatehouse check) reads it: its entries join
// the group's own allow: and deny: entries. A missing file is no entries.

// ManagedFileName is the managed lists' file, in the database's directory.
const ManagedFileName = "managed-lists.yaml"

// MaxManagedEntries bounds the entries of one group's allow or deny list
// in the managed file; the console refuses more.
const MaxManagedEntries = 5000

// ManagedEntry is one allow or deny entry made in the console.
type ManagedEntry struct {
	Entry  string    `yaml:"entry"`            // a domain (covers its subdomains), host/path URL, IP or CIDR
	Reason string    `yaml:"reason"`           // why, as IT wrote it
	By     string    `yaml:"by"`               // the account that added it
	At     time.Time `yaml:"at"`               // when
	Report int64     `yaml:"report,omitempty"` // the mistake report it approved, if any
}

// ManagedGroup is one group's managed entries.
type ManagedGroup struct {
	Allow []ManagedEntry `yaml:"allow,omitempty"`
	Deny  []ManagedEntry `yaml:"deny,omitempty"`
}

// Managed is the whole managed file.
type Managed struct {
	Groups map[string]*ManagedGroup `yaml:"groups"`
}

// ManagedFile is where the managed lists of c live.
func (c *Config) ManagedFile() string {
	return filepath.Join(filepath.Dir(c.Database), ManagedFileName)
}

// Managed are the managed entries this config was loaded with (never nil).
func (c *Config) ManagedLists() *Managed {
	if c.managed == nil {
		return &Managed{Groups: map[string]*ManagedGroup{}}
	}
	return c.managed
}

// ReadManaged reads a managed file; a missing file is an empty one. The
// errors name the file, line and entry.
func ReadManaged(path string) (*Managed, error) {
	m := &Managed{Groups: map[string]*ManagedGroup{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		msg := err.Error()
		var pe *fs.PathError
		if errors.As(err, &pe) {
			msg = pe.Err.Error()
		}
		return nil, Errors{{File: path, Msg: "cannot read the managed lists file: " + msg, cause: err}}
	}
	root, errs := parseDocument(data, path)
	if errs != nil {
		return nil, errs
	}
	if root == nil {
		return m, nil
	}
	bad := func(n *yaml.Node, at, format string, args ...any) {
		errs = append(errs, Error{File: path, Line: n.Line, Column: n.Column, Path: at, Msg: fmt.Sprintf(format, args...)})
	}
	pairs := func(n *yaml.Node, at string) [][2]*yaml.Node {
		if n.Kind != yaml.MappingNode {
			if !isNull(n) {
				bad(n, at, "want a mapping")
			}
			return nil
		}
		var out [][2]*yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			out = append(out, [2]*yaml.Node{n.Content[i], n.Content[i+1]})
		}
		return out
	}
	for _, top := range pairs(root, "") {
		if top[0].Value != "groups" {
			bad(top[0], top[0].Value, "unknown key (want groups)")
			continue
		}
		for _, gp := range pairs(top[1], "groups") {
			gname := gp[0].Value
			gat := joinKey("groups", gname)
			g := &ManagedGroup{}
			m.Groups[gname] = g
			for _, kp := range pairs(gp[1], gat) {
				kat := joinKey(gat, kp[0].Value)
				var list *[]ManagedEntry
				switch kp[0].Value {
				case "allow":
					list = &g.Allow
				case "deny":
					list = &g.Deny
				default:
					bad(kp[0], kat, "unknown key (want allow or deny)")
					continue
				}
				if kp[1].Kind != yaml.SequenceNode {
					if !isNull(kp[1]) {
						bad(kp[1], kat, "want a list of entries")
					}
					continue
				}
				for i, en := range kp[1].Content {
					eat := joinIndex(kat, i)
					for _, f := range pairs(en, eat) {
						switch f[0].Value {
						case "entry", "reason", "by", "at", "report":
						default:
							bad(f[0], joinKey(eat, f[0].Value), "unknown key (want entry, reason, by, at, report)")
						}
					}
					var e ManagedEntry
					if err := en.Decode(&e); err != nil {
						bad(en, eat, "%v", err)
						continue
					}
					if msg := CheckManaged(e); msg != "" {
						bad(en, eat, "%s", msg)
						continue
					}
					*list = append(*list, e)
				}
				if len(*list) > MaxManagedEntries {
					bad(kp[1], kat, "more than %d entries", MaxManagedEntries)
				}
			}
			seen := map[string]string{}
			for kind, list := range map[string][]ManagedEntry{"allow": g.Allow, "deny": g.Deny} {
				for _, e := range list {
					n, _ := CheckEntry(e.Entry)
					if prev, dup := seen[n]; dup {
						errs = append(errs, Error{File: path, Path: gat, Msg: fmt.Sprintf("%q is listed twice (%s and %s)", e.Entry, prev, kind)})
					}
					seen[n] = kind
				}
			}
		}
	}
	if len(errs) > 0 {
		errs.sort()
		return nil, errs
	}
	return m, nil
}

// CheckManaged checks one entry as the config's allow and deny entries are
// checked (CheckEntry), and that it gives a reason; it returns the
// problem, "" when there is none.
func CheckManaged(e ManagedEntry) string {
	if _, msg := CheckEntry(e.Entry); msg != "" {
		return msg
	}
	if strings.TrimSpace(e.Reason) == "" {
		return fmt.Sprintf("entry %q has no reason: every managed entry says why it was made", e.Entry)
	}
	if len(e.Reason) > 500 {
		return fmt.Sprintf("entry %q: the reason is longer than 500 characters", e.Entry)
	}
	return ""
}

// CheckEntry checks a group allow or deny entry (a domain, "*.domain",
// host/path URL, IP address or CIDR) with the list loader's canonicaliser
// and returns its canonical form, or the problem.
func CheckEntry(s string) (norm, problem string) { return checkEntry(s) }

// WriteManaged writes m to path atomically (a temporary file renamed over
// it), mode 0600.
func WriteManaged(path string, m *Managed) error {
	for _, g := range m.Groups {
		slices.SortStableFunc(g.Allow, func(a, b ManagedEntry) int { return strings.Compare(a.Entry, b.Entry) })
		slices.SortStableFunc(g.Deny, func(a, b ManagedEntry) int { return strings.Compare(a.Entry, b.Entry) })
	}
	var b bytes.Buffer
	b.WriteString("# Gatehouse managed allow and deny lists: written by the safeguarding console\n" +
		"# (IT, \"Allow and deny\"), where every change is audited. Make changes there.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(m); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	return atomicfile.Write(path, b.Bytes(), 0o600)
}

// applyManaged reads the managed file and gives each group its managed
// entries; an entry for a group the config does not have is a warning.
func (v *validator) applyManaged() {
	m, err := ReadManaged(v.c.ManagedFile())
	if err != nil {
		var es Errors
		if errors.As(err, &es) {
			v.errs = append(v.errs, es...)
		} else {
			v.errs = append(v.errs, Error{File: v.c.ManagedFile(), Msg: err.Error()})
		}
		return
	}
	v.c.managed = m
	for name, mg := range m.Groups {
		g := v.c.Groups[name]
		if g == nil {
			if len(mg.Allow)+len(mg.Deny) > 0 {
				v.warns = append(v.warns, Error{File: v.c.ManagedFile(), Path: joinKey("groups", name),
					Msg: fmt.Sprintf("managed entries for group %q, which the config does not have, are not used", name)})
			}
			continue
		}
		g.ManagedAllow, g.ManagedDeny = g.ManagedAllow[:0], g.ManagedDeny[:0]
		for _, e := range mg.Allow {
			g.ManagedAllow = append(g.ManagedAllow, e.Entry)
		}
		for _, e := range mg.Deny {
			g.ManagedDeny = append(g.ManagedDeny, e.Entry)
		}
	}
}

// Bounds of an allow entry's address range: an allow entry lifts the
// group's blocks for every address it covers, so one wider than these
// is not "a site".
const (
	MinAllowBits4 = 16 // an IPv4 allow entry covers at most a /16
	MinAllowBits6 = 32 // an IPv6 allow entry covers at most a /32
)

// TooBroadAllow reports why an allow entry (in the canonical form
// CheckEntry returns) would lift a group's blocks for far more than one
// site: a name without a dot ("com", "example"), a public suffix under
// which unrelated people register sites ("co.uk", "github.io": the
// public suffix list, its ICANN and private parts; "sch.uk", whose every
// child is one), a name and path
// on one of those, or an address range wider than MinAllowBits4 or
// MinAllowBits6. "" when it names a site.
func TooBroadAllow(norm string) string {
	if p, err := netip.ParsePrefix(norm); err == nil {
		bits, min, fam := p.Bits(), MinAllowBits4, "IPv4"
		if p.Addr().Is4In6() {
			bits -= 96
		} else if p.Addr().Is6() {
			min, fam = MinAllowBits6, "IPv6"
		}
		if bits < min {
			return fmt.Sprintf("%s covers far more than one site (an %s allow entry may cover at most a /%d): enter the site's own address or network", norm, fam, min)
		}
		return ""
	}
	host := norm
	if i := strings.IndexByte(host, '/'); i >= 0 {
		host = host[:i]
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	// A registry's own name whose every child is a suffix ("sch.uk",
	// under the rule *.sch.uk) is one too.
	const child = "gatehouse-probe."
	suffix, _ := publicsuffix.PublicSuffix(host)
	under, _ := publicsuffix.PublicSuffix(child + host)
	if !strings.Contains(host, ".") || suffix == host || under == child+host {
		return fmt.Sprintf("%s is a top-level name or public suffix (like com, co.uk or github.io), so allowing it would allow far more than one site: every site under it; enter the site's own name (for example bbc.co.uk)", host)
	}
	return ""
}
