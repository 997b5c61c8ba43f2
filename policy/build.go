package policy

import (
	"errors"
	"fmt"
	"math/bits"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/internal/username"
)

// inlineBit marks entries of a group's inline allow/deny index.
const inlineBit = bl.Category(63)

func trailingZeros(v uint64) int { return bits.TrailingZeros64(v) }

// ListBits assigns a list bit to each configured list that has no category
// (lists used as group allow or deny lists), in config order.
func ListBits(cfg *config.Config) (map[string]bl.Category, error) {
	out := map[string]bl.Category{}
	next := bl.FirstListBit
	for _, l := range cfg.Lists {
		if l.Category != "" || strings.EqualFold(l.Format, string(bl.FormatSquidGuard)) {
			continue
		}
		if int(next-bl.FirstListBit) >= bl.MaxListBits {
			return nil, fmt.Errorf("lists: more than %d lists without a category (allow/deny lists); merge some", bl.MaxListBits)
		}
		out[l.Name] = next
		next++
	}
	return out, nil
}

// Sources turns the configured lists into blocklist sources, reading feed
// secrets.
func Sources(cfg *config.Config) ([]bl.Source, error) {
	lbits, err := ListBits(cfg)
	if err != nil {
		return nil, err
	}
	var errs []error
	out := make([]bl.Source, 0, len(cfg.Lists))
	for _, l := range cfg.Lists {
		s := bl.Source{Name: l.Name, Path: l.Path, Refresh: l.Refresh}
		if s.Format, err = bl.ParseFormat(l.Format); err != nil {
			errs = append(errs, fmt.Errorf("lists %s: %w", l.Name, err))
			continue
		}
		s.MinRatio = l.MinRatio
		if l.Category != "" {
			if s.Category, err = bl.ParseCategory(l.Category); err != nil {
				errs = append(errs, fmt.Errorf("lists %s: %w", l.Name, err))
				continue
			}
		} else if b, ok := lbits[l.Name]; ok {
			s.Category = b
		}
		if len(l.Categories) > 0 {
			s.SquidCategories = map[string]bl.Category{}
			for dir, name := range l.Categories {
				c, err := bl.ParseCategory(name)
				if err != nil {
					errs = append(errs, fmt.Errorf("lists %s: categories %s: %w", l.Name, dir, err))
					continue
				}
				s.SquidCategories[dir] = c
			}
		}
		if l.URL != "" {
			if s.Format == bl.FormatSquidGuard {
				errs = append(errs, fmt.Errorf("lists %s: squidguard lists are read from a local directory (path), not a URL", l.Name))
				continue
			}
			f := &bl.Feed{Name: l.Name, URL: l.URL, Timeout: l.Timeout.D(), MaxSize: int64(l.MaxSize)}
			if a := l.Auth; a != nil {
				if a.Username != "" && a.Password != nil {
					f.Username = a.Username
					if f.Password, err = a.Password.Read(); err != nil {
						errs = append(errs, fmt.Errorf("lists %s: auth.password: %w", l.Name, err))
					}
				}
				if a.Header != "" && a.Token != nil {
					tok, err := a.Token.Read()
					if err != nil {
						errs = append(errs, fmt.Errorf("lists %s: auth.token: %w", l.Name, err))
					}
					f.Header = http.Header{}
					f.Header.Set(a.Header, tok)
				}
			}
			s.Feed = f
		}
		out = append(out, s)
	}
	return out, errors.Join(errs...)
}

// engines numbers the engines built (Engine.Gen).
var engines atomic.Uint64

// New builds an engine for cfg around ix, an index built from cfg's lists
// (Sources): the list bits of cfg's allow and deny lists must be the bits
// of ix. ix may be nil to check cfg's groups before building an index.
func New(cfg *config.Config, ix *bl.Index) (*Engine, error) {
	e := &Engine{
		gen:       engines.Add(1),
		ix:        ix,
		cfg:       cfg,
		groups:    map[string]*group{},
		devices:   map[netip.Addr]*device{},
		macs:      map[string]*device{},
		users:     map[string]*user{},
		listNames: map[bl.Category]string{},
		loc:       cfg.Location(),
	}
	for c := range e.kind {
		e.kind[c] = bl.KindMarker
	}
	for _, c := range bl.Categories() {
		info := c.Info()
		e.severity[c], e.route[c], e.kind[c] = info.Severity, info.Route, info.Kind
	}
	var errs []error
	for name, p := range cfg.Categories {
		c, err := bl.ParseCategory(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("categories: %w", err))
			continue
		}
		if c.Restricted() {
			continue // the restricted tier keeps its handling
		}
		if p.Severity != nil {
			e.severity[c] = *p.Severity
		}
		if p.Route != "" {
			e.route[c] = bl.Route(p.Route)
		}
	}
	lbits, err := ListBits(cfg)
	if err != nil {
		return nil, err
	}
	for name, b := range lbits {
		e.listNames[b] = name
	}
	names := make([]string, 0, len(cfg.Groups))
	for name := range cfg.Groups {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		g, err := buildGroup(name, cfg.Groups[name], lbits)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		e.groups[name] = g
		e.ipDeny = e.ipDeny || g.deny.HasPrefixes()
		for _, p := range cfg.Groups[name].Networks {
			e.nets = append(e.nets, netGroup{p.Masked(), g})
		}
	}
	slices.SortStableFunc(e.nets, func(a, b netGroup) int { return b.prefix.Bits() - a.prefix.Bits() })
	e.defaultGroup = e.groups[cfg.Clients.DefaultGroup]
	if e.defaultGroup == nil {
		errs = append(errs, fmt.Errorf("clients.default_group: no group named %q", cfg.Clients.DefaultGroup))
	}
	for _, d := range cfg.Clients.Devices {
		dev := &device{name: d.Name}
		if d.Group != "" {
			if dev.group = e.groups[d.Group]; dev.group == nil {
				errs = append(errs, fmt.Errorf("clients.devices %s: no group named %q", d.Name, d.Group))
			}
		}
		if d.IP.IsValid() {
			e.devices[d.IP.Unmap()] = dev
		}
		if hw, err := net.ParseMAC(d.MAC); err == nil && len(hw) == 6 {
			e.macs[hw.String()] = dev // lower case with colons, as identity.NormalizeMAC writes it
		}
	}
	for _, u := range cfg.Clients.Users {
		usr := &user{name: u.Name}
		if u.Group != "" {
			if usr.group = e.groups[u.Group]; usr.group == nil {
				errs = append(errs, fmt.Errorf("clients.users %s: no group named %q", u.Name, u.Group))
			}
		}
		e.users[username.Canon(u.Name)] = usr // as config check compares them
	}
	if e.search, err = searchSetFor(cfg); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return e, nil
}

func buildGroup(name string, cg *config.Group, lbits map[string]bl.Category) (*group, error) {
	g := &group{name: name}
	var errs []error
	cats := func(field string, names []string) bl.CategorySet {
		var s bl.CategorySet
		for _, n := range names {
			c, err := bl.ParseCategory(n)
			if err != nil {
				errs = append(errs, fmt.Errorf("groups.%s.%s: %w", name, field, err))
				continue
			}
			s = s.Add(c)
		}
		return s
	}
	g.always = cats("block", cg.Block)
	for i, s := range cg.Schedules {
		set := cats(fmt.Sprintf("schedules[%d].block", i), s.Block)
		for j, w := range s.When {
			days, err := config.ParseDays(w.Days)
			if err != nil {
				errs = append(errs, fmt.Errorf("groups.%s.schedules[%d].when[%d].days: %w", name, i, j, err))
				continue
			}
			g.windows = append(g.windows, window{days: days, from: int(w.From), to: int(w.To), cats: set, schedule: s.Name})
		}
	}
	g.buildStarts()
	var err error
	if g.safeSearch, err = ParseSafeSearch(cg.SafeSearch); err != nil {
		errs = append(errs, fmt.Errorf("groups.%s.safe_search: %w", name, err))
	}
	listBits := func(field string, names []string) bl.CategorySet {
		var s bl.CategorySet
		for _, n := range names {
			b, ok := lbits[n]
			if !ok {
				errs = append(errs, fmt.Errorf("groups.%s.%s: no list without a category named %q", name, field, n))
				continue
			}
			s = s.Add(b)
		}
		return s
	}
	g.allowBits = listBits("allow_lists", cg.AllowLists)
	g.denyBits = listBits("deny_lists", cg.DenyLists)
	// The managed lists' entries (made in the console) join the group's
	// own: one index each, so a decision looks no further than before.
	if g.allow, err = inlineIndex("group/"+name+"/allow", slices.Concat(cg.Allow, cg.ManagedAllow)); err != nil {
		errs = append(errs, fmt.Errorf("groups.%s.allow: %w", name, err))
	}
	if g.deny, err = inlineIndex("group/"+name+"/deny", slices.Concat(cg.Deny, cg.ManagedDeny)); err != nil {
		errs = append(errs, fmt.Errorf("groups.%s.deny: %w", name, err))
	}
	return g, errors.Join(errs...)
}

// inlineIndex indexes a group's own allow or deny entries: domains (which
// cover their subdomains; "*." is accepted), host/path URLs (a deny entry
// matches as a prefix, an allow entry only at a boundary: Decide asks
// LookupURL and LookupAllowURL), and IP addresses and CIDR prefixes (an
// address also as a host name, for URLs that name it).
func inlineIndex(name string, entries []string) (*bl.Index, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	b := bl.NewBuilder(len(entries))
	_, sink, err := b.AddList(bl.ListInfo{Name: name, Source: name, Category: inlineBit})
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, raw := range entries {
		e := strings.TrimPrefix(strings.TrimSpace(raw), "*.")
		if p, err := netip.ParsePrefix(e); err == nil {
			sink.Prefix(p.Masked())
			continue
		}
		if a, err := netip.ParseAddr(e); err == nil && a.Zone() == "" {
			sink.Prefix(netip.PrefixFrom(a, a.BitLen()))
		}
		if strings.Contains(e, "/") {
			u, err := bl.NormalizeURL(e)
			if err != nil {
				errs = append(errs, fmt.Errorf("%q: %w", raw, err))
				continue
			}
			sink.URL([]byte(u), false)
			continue
		}
		h, err := bl.NormalizeHost(e)
		if err != nil {
			errs = append(errs, fmt.Errorf("%q: %w", raw, err))
			continue
		}
		sink.Domain([]byte(h), bl.ModeSubtree)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return b.Build()
}
