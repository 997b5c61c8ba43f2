package config

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// Change is one difference found by Diff: the path of the setting that
// changed ("groups.students.block", "dns.rate_limit.qps") and the change in
// plain words.
type Change struct {
	Path string
	Text string
}

func (c Change) String() string { return c.Text }

// Diff lists, in plain words, how the filtering rules in b differ from a:
// groups, lists, category overrides and who may use Gatehouse. It is the
// audit trail of a reload ("who changed the rules" is answered by the log
// line's time and the file's owner). The other sections (school, log,
// database, dns, proxy, admin, reports) are compared setting by setting,
// one line per changed setting, without values.
func Diff(a, b *Config) []Change {
	var out []Change
	add := func(path, format string, args ...any) {
		out = append(out, Change{Path: path, Text: path + ": " + fmt.Sprintf(format, args...)})
	}

	for _, name := range unionKeys(a.Groups, b.Groups) {
		ga, gb := a.Groups[name], b.Groups[name]
		at := "groups." + name
		switch {
		case ga == nil:
			add(at, "added (blocks %s)", orNone(gb.Block))
		case gb == nil:
			add(at, "removed")
		default:
			diffStrings(&out, "groups."+name+".block", ga.Block, gb.Block)
			diffStrings(&out, "groups."+name+".allow", ga.Allow, gb.Allow)
			diffStrings(&out, "groups."+name+".deny", ga.Deny, gb.Deny)
			diffStrings(&out, "groups."+name+".allow (managed)", ga.ManagedAllow, gb.ManagedAllow)
			diffStrings(&out, "groups."+name+".deny (managed)", ga.ManagedDeny, gb.ManagedDeny)
			diffStrings(&out, "groups."+name+".allow_lists", ga.AllowLists, gb.AllowLists)
			diffStrings(&out, "groups."+name+".deny_lists", ga.DenyLists, gb.DenyLists)
			diffStrings(&out, "groups."+name+".networks", addrStrings(ga.Networks), addrStrings(gb.Networks))
			if ga.SafeSearch != gb.SafeSearch {
				add(at+".safe_search", "%s → %s", ga.SafeSearch, gb.SafeSearch)
			}
			if !reflect.DeepEqual(ga.Schedules, gb.Schedules) {
				add(at+".schedules", "changed")
			}
			if !reflect.DeepEqual(ga.Extra(), gb.Extra()) {
				add(at, "other settings changed")
			}
		}
	}

	la, lb := listsByName(a), listsByName(b)
	for _, name := range unionKeys(la, lb) {
		x, y := la[name], lb[name]
		switch {
		case x == nil:
			add("lists."+name, "added (%s)", describeList(y))
		case y == nil:
			add("lists."+name, "removed")
		case !reflect.DeepEqual(x, y):
			add("lists."+name, "changed (%s)", describeList(y))
		}
	}
	if order(a.Lists, lb) != order(b.Lists, la) {
		add("lists", "reordered")
	}

	for _, name := range unionKeys(a.Categories, b.Categories) {
		if !reflect.DeepEqual(a.Categories[name], b.Categories[name]) {
			add("categories."+name, "override changed")
		}
	}
	diffStrings(&out, "clients.allow", addrStrings(a.Clients.Allow), addrStrings(b.Clients.Allow))
	if a.Clients.DefaultGroup != b.Clients.DefaultGroup {
		add("clients.default_group", "%s → %s", a.Clients.DefaultGroup, b.Clients.DefaultGroup)
	}
	if !reflect.DeepEqual(a.Clients.Devices, b.Clients.Devices) {
		add("clients.devices", "changed")
	}
	if !reflect.DeepEqual(a.Clients.Users, b.Clients.Users) {
		add("clients.users", "changed")
	}
	// Every other section (school, log, database, dns, proxy, admin,
	// reports and any added later), setting by setting.
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	for _, f := range reflect.VisibleFields(va.Type()) {
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch name {
		case "", "-", "groups", "lists", "categories", "clients":
			continue
		}
		diffSettings(&out, name, va.FieldByIndex(f.Index), vb.FieldByIndex(f.Index))
	}
	return out
}

// diffSettings adds a "changed" line for each setting under path that
// differs, walking into nested sections (structs) by their YAML names.
// Values are not shown: some sections hold addresses of secrets.
func diffSettings(out *[]Change, path string, x, y reflect.Value) {
	if x.Kind() != reflect.Struct || x.Type().PkgPath() != configPkg {
		if !reflect.DeepEqual(x.Interface(), y.Interface()) {
			*out = append(*out, Change{Path: path, Text: path + ": changed"})
		}
		return
	}
	t := x.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		diffSettings(out, path+"."+name, x.Field(i), y.Field(i))
	}
}

var configPkg = reflect.TypeFor[Change]().PkgPath()

// order is the names of the lists in ls that other also has, in ls's order
// (the order gives allow and deny lists their bits, so a reorder is worth
// a line of its own).
func order(ls []List, other map[string]*List) string {
	var names []string
	for i := range ls {
		if other[ls[i].Name] != nil {
			names = append(names, ls[i].Name)
		}
	}
	return strings.Join(names, ",")
}

// Extra returns a group's settings that Diff does not compare one by one,
// as YAML, so new fields still show up as a change.
func (g *Group) Extra() string {
	c := *g
	c.Block, c.Allow, c.Deny, c.AllowLists, c.DenyLists, c.Networks, c.SafeSearch, c.Schedules = nil, nil, nil, nil, nil, nil, "", nil
	c.Description = ""
	data, _ := yaml.Marshal(&c)
	return string(data)
}

func unionKeys[V any](a, b map[string]V) []string {
	keys := slices.Collect(maps.Keys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

func diffStrings(out *[]Change, path string, a, b []string) {
	var added, removed []string
	for _, s := range b {
		if !slices.Contains(a, s) {
			added = append(added, s)
		}
	}
	for _, s := range a {
		if !slices.Contains(b, s) {
			removed = append(removed, s)
		}
	}
	if len(added) > 0 {
		*out = append(*out, Change{Path: path, Text: fmt.Sprintf("%s: added %s", path, strings.Join(added, ", "))})
	}
	if len(removed) > 0 {
		*out = append(*out, Change{Path: path, Text: fmt.Sprintf("%s: removed %s", path, strings.Join(removed, ", "))})
	}
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "nothing"
	}
	return strings.Join(s, ", ")
}

func addrStrings[T fmt.Stringer](ps []T) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

func listsByName(c *Config) map[string]*List {
	m := make(map[string]*List, len(c.Lists))
	for i := range c.Lists {
		m[c.Lists[i].Name] = &c.Lists[i]
	}
	return m
}

// describeList says where a list comes from, without credentials.
func describeList(l *List) string {
	from := l.Path
	if l.URL != "" {
		from = redactURL(l.URL)
	}
	cat := l.Category
	if cat == "" {
		cat = "allow/deny list"
	}
	return cat + " from " + from
}

// redactURL drops userinfo and the query (where feed keys live).
func redactURL(s string) string {
	if i := strings.Index(s, "://"); i >= 0 {
		rest := s[i+3:]
		if at := strings.LastIndex(strings.SplitN(rest, "/", 2)[0], "@"); at >= 0 {
			rest = rest[at+1:]
		}
		s = s[:i+3] + rest
	}
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i]
	}
	return s
}
