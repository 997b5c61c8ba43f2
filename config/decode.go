package config

// Strict YAML decoding. The file is parsed into a yaml.Node tree and walked
// with reflection into the typed structs, so that every problem is reported
// at once with its line and column instead of stopping at the first:
//
//   - unknown keys are errors, with a "did you mean" when a known key is close;
//   - duplicate keys are errors;
//   - a value of the wrong shape ("expected a list, got a mapping") is an error;
//   - scalars go through encoding.TextUnmarshaler where the type has one.
//
// The walk overlays the file on a Config that already holds the defaults:
// a struct is merged key by key, a map entry replaces the entry of the same
// key (a null entry deletes it), and lists and scalars replace the old value
// whole. Anchors, aliases and "<<" merge keys are supported.

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	yaml "go.yaml.in/yaml/v3"
)

// position is where a node was written (1-based).
type position struct{ Line, Column int }

// positions maps key paths (groups.students.block[2]) to where they were
// written, so that validation can cite the offending value.
type positions map[string]position

// maxNodes bounds the walk, so that a file of nested aliases ("billion
// laughs") cannot make it run for ever; maxExpanded bounds the nodes
// reached through aliases, so that such a file fails after little work
// (a real config reuses a few anchors, far below it).
const (
	maxNodes    = 1 << 20
	maxExpanded = 100_000
)

type decoder struct {
	file     string
	errs     Errors
	pos      positions
	bad      map[string]bool // paths whose value could not be decoded
	nodes    int             // walked, aliases expanded
	expanded int             // walked through an alias
	inAlias  int             // aliases being expanded (nesting)
	tooLarge bool            // reported
}

func newDecoder(file string) *decoder {
	return &decoder{file: file, pos: positions{}, bad: map[string]bool{}}
}

// fail reports a value that could not be decoded; validation then stays
// quiet about that path.
func (d *decoder) fail(p position, path, format string, args ...any) {
	d.report(p, path, format, args...)
	d.bad[path] = true
}

func (d *decoder) report(p position, path, format string, args ...any) {
	d.errs = append(d.errs, Error{File: d.file, Line: p.Line, Column: p.Column, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// parseDocument parses data into the root node of its single document. It
// returns nil (and no errors) for an empty file or an empty document.
func parseDocument(data []byte, file string) (*yaml.Node, Errors) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, Errors{syntaxError(err, data, file)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		line := extra.Line
		if extra.Kind == yaml.DocumentNode && len(extra.Content) > 0 {
			line = extra.Content[0].Line
		}
		return nil, Errors{{File: file, Line: line, Msg: `only one YAML document is allowed (remove the second "---")`}}
	} else if !errors.Is(err, io.EOF) {
		return nil, Errors{syntaxError(err, data, file)}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil, nil
		}
		root = root.Content[0]
	}
	if isNull(root) {
		return nil, nil
	}
	return root, nil
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError turns a yaml.v3 parse error ("yaml: line 3: ...") into an
// Error with the file name, and a column where one can be worked out.
func syntaxError(err error, data []byte, file string) Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	e := Error{File: file}
	// yaml.v3 leaves the line out when it is the first (its marks are
	// 0-based and 0 reads as "unset"), and gives parser (as opposed to
	// scanner) errors 0-based lines. Reader errors (bad UTF-8, control
	// characters) have no line at all.
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		msg = m[2]
		if strings.HasPrefix(msg, "did not find expected") || strings.HasPrefix(msg, "found duplicate %") ||
			strings.HasPrefix(msg, "found incompatible YAML document") || strings.HasPrefix(msg, "found undefined tag handle") {
			e.Line++
		}
	} else if !strings.Contains(msg, "UTF-8") && !strings.Contains(msg, "Unicode") &&
		!strings.Contains(msg, "control characters") && !strings.HasPrefix(msg, "input error") {
		e.Line = 1
	}
	lines := strings.Split(string(data), "\n")
	if n := len(lines); n > 0 && lines[n-1] == "" {
		lines = lines[:n-1]
	}
	switch {
	case strings.Contains(msg, "found character that cannot start any token") &&
		e.Line >= 1 && e.Line <= len(lines) && strings.Contains(lines[e.Line-1], "\t"):
		e.Column = strings.IndexByte(lines[e.Line-1], '\t') + 1
		msg += " (a tab: YAML indentation must use spaces)"
	case strings.HasPrefix(msg, "did not find expected ',' or") && e.Line >= 1 && e.Line <= len(lines) &&
		strings.Contains(lines[e.Line-1], "?"):
		// yaml.v3 reads a '?' in a [flow, list] as the start of a key.
		msg += " (an entry with a '?' in a [a, b] list must be quoted, \"site.example/watch?v=x\", or written one per line with \"- \")"
	case strings.Contains(msg, "end of stream") || strings.Contains(msg, "quoted scalar"):
		if l, c, ok := unclosedQuote(data); ok {
			e.Line, e.Column = l, c
			msg = "unclosed quote (" + msg + ")"
		}
	}
	if e.Line > len(lines) && len(lines) > 0 {
		e.Line = len(lines) // yaml.v3 can report the line after the end
	}
	e.Msg = "invalid YAML: " + msg
	return e
}

// unclosedQuote finds the opening of a quoted scalar that is never closed.
// It is a heuristic used only to place an error yaml.v3 already reported.
func unclosedQuote(data []byte) (line, col int, ok bool) {
	var quote byte
	l, c := 1, 0
	startL, startC := 0, 0
	tokenStart := true // only spaces, or one of ":-[{,?", since the last token
	comment := false
	for i := 0; i < len(data); i++ {
		ch := data[i]
		c++
		if ch == '\n' {
			l, c = l+1, 0
			comment = false
			if quote == 0 {
				tokenStart = true
			}
			continue
		}
		if comment {
			continue
		}
		switch {
		case quote == '"':
			if ch == '\\' {
				i++
				c++
			} else if ch == '"' {
				quote = 0
				tokenStart = false
			}
		case quote == '\'':
			if ch == '\'' {
				if i+1 < len(data) && data[i+1] == '\'' {
					i++
					c++
				} else {
					quote = 0
					tokenStart = false
				}
			}
		case ch == '#' && (i == 0 || data[i-1] == ' ' || data[i-1] == '\t' || data[i-1] == '\n'):
			comment = true
		case (ch == '"' || ch == '\'') && tokenStart:
			quote, startL, startC = ch, l, c
		case ch == ' ' || ch == '\t':
		case strings.IndexByte(":-[{,?", ch) >= 0:
			tokenStart = true
		default:
			tokenStart = false
		}
	}
	if quote != 0 {
		return startL, startC, true
	}
	return 0, 0, false
}

// decodeInto overlays the root node onto c (see the package comment above).
func (d *decoder) decodeInto(root *yaml.Node, c *Config) {
	d.value(nil, root, reflect.ValueOf(c).Elem(), "")
	d.dedupe()
}

// dedupe drops repeated errors (an anchor decoded at several places reports
// its own problems only once).
func (d *decoder) dedupe() {
	seen := map[Error]bool{}
	out := d.errs[:0]
	for _, e := range d.errs {
		if !seen[e] {
			seen[e] = true
			out = append(out, e)
		}
	}
	d.errs = out
}

var (
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	prefixType          = reflect.TypeFor[netip.Prefix]()
	addrType            = reflect.TypeFor[netip.Addr]()
	secretType          = reflect.TypeFor[Secret]()
	durationType        = reflect.TypeFor[Duration]()
	byteSizeType        = reflect.TypeFor[ByteSize]()
	clockType           = reflect.TypeFor[ClockTime]()
)

func posOf(n *yaml.Node) position { return position{n.Line, n.Column} }

// resolve follows aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// value decodes n into v. key is the mapping key n belongs to (nil for list
// items and the root): collections and nulls are cited at their key, scalars
// at the value itself.
func (d *decoder) value(key, n *yaml.Node, v reflect.Value, path string) {
	if d.tooLarge {
		return
	}
	if n.Kind == yaml.AliasNode {
		d.inAlias++
		defer func() { d.inAlias-- }()
	}
	if d.inAlias > 0 {
		d.expanded++
	}
	if d.nodes++; d.nodes > maxNodes || d.expanded > maxExpanded {
		d.tooLarge = true
		d.fail(posOf(n), path, "document too large (too many nodes after expanding aliases)")
		return
	}
	n = resolve(n)
	p := posOf(n)
	if key != nil && (n.Kind != yaml.ScalarNode || isNull(n)) {
		p = posOf(key)
	}
	d.pos[path] = p
	t := v.Type()
	if isNull(n) {
		v.SetZero()
		return
	}
	switch {
	case t == prefixType:
		if s, ok := d.scalar(n, p, path, t); ok {
			if pr, err := parsePrefix(s); err != nil {
				d.fail(p, path, "%v", err)
			} else {
				v.Set(reflect.ValueOf(pr))
			}
		}
		return
	case t == addrType:
		if s, ok := d.scalar(n, p, path, t); ok {
			if a, err := parseAddr(s); err != nil {
				d.fail(p, path, "%v", err)
			} else {
				v.Set(reflect.ValueOf(a))
			}
		}
		return
	case reflect.PointerTo(t).Implements(textUnmarshalerType):
		if s, ok := d.scalar(n, p, path, t); ok {
			if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
				d.fail(p, path, "%v", err)
			}
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		if t.Elem() == secretType && n.Kind == yaml.ScalarNode {
			// Never echo the value: it is probably the secret itself.
			d.fail(p, path, `secrets cannot be written in the config file; use "file: /path/to/secret" or "env: VARIABLE_NAME"`)
			return
		}
		nv := reflect.New(t.Elem())
		d.value(key, n, nv.Elem(), path)
		v.Set(nv)
	case reflect.Struct:
		d.structure(n, v, path, p)
	case reflect.Map:
		d.mapping(n, v, path, p)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(p, path, "expected %s, got %s", describeType(t), describeNode(n))
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.value(nil, item, s.Index(i), joinIndex(path, i))
		}
		v.Set(s)
	case reflect.String:
		if s, ok := d.scalar(n, p, path, t); ok {
			v.SetString(s)
		}
	case reflect.Bool:
		if s, ok := d.scalar(n, p, path, t); ok {
			switch strings.ToLower(s) {
			case "true", "yes", "on":
				v.SetBool(true)
			case "false", "no", "off":
				v.SetBool(false)
			default:
				d.fail(p, path, "expected true or false, got %s", describeNode(n))
			}
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var i int64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil {
			d.fail(p, path, "expected %s, got %s", describeType(t), describeNode(n))
		} else if v.OverflowInt(i) {
			d.fail(p, path, "number %s is out of range", n.Value)
		} else {
			v.SetInt(i)
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		var u uint64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&u) != nil {
			d.fail(p, path, "expected %s, got %s", describeType(t), describeNode(n))
		} else if v.OverflowUint(u) {
			d.fail(p, path, "number %s is out of range", n.Value)
		} else {
			v.SetUint(u)
		}
	case reflect.Float32, reflect.Float64:
		var f float64
		if tag := n.ShortTag(); n.Kind != yaml.ScalarNode || (tag != "!!int" && tag != "!!float") || n.Decode(&f) != nil {
			d.fail(p, path, "expected %s, got %s", describeType(t), describeNode(n))
		} else {
			v.SetFloat(f)
		}
	default:
		d.fail(p, path, "internal error: cannot decode into %s", t)
	}
}

// scalar returns the text of a scalar node, or reports that n is not one.
func (d *decoder) scalar(n *yaml.Node, p position, path string, t reflect.Type) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!binary" {
		d.fail(p, path, "expected %s, got %s", describeType(t), describeNode(n))
		return "", false
	}
	return n.Value, true
}

type kv struct{ k, v *yaml.Node }

// pairs lists a mapping's entries, reporting bad and duplicate keys and
// expanding "<<" merge keys (explicit keys win over merged ones).
func (d *decoder) pairs(n *yaml.Node, path string, depth int) []kv {
	var out, merged []kv
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merged = append(merged, d.merge(val, path, depth)...)
			continue
		}
		if k.Kind != yaml.ScalarNode || isNull(k) {
			d.report(posOf(k), path, "a key must be a plain name, got %s", describeNode(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.report(posOf(k), joinKey(path, k.Value), "duplicate key %q (first set at line %d)", k.Value, first.Line)
			continue
		}
		seen[k.Value] = k
		out = append(out, kv{k, val})
	}
	for _, m := range merged {
		if _, ok := seen[m.k.Value]; !ok {
			seen[m.k.Value] = m.k
			out = append(out, m)
		}
	}
	return out
}

func (d *decoder) merge(val *yaml.Node, path string, depth int) []kv {
	val = resolve(val)
	if depth > 20 {
		d.report(posOf(val), path, "merge keys nested too deeply")
		return nil
	}
	switch val.Kind {
	case yaml.MappingNode:
		return d.pairs(val, path, depth+1)
	case yaml.SequenceNode:
		var out []kv
		for _, item := range val.Content {
			if item = resolve(item); item.Kind != yaml.MappingNode {
				d.report(posOf(item), path, "a << merge list must hold mappings, got %s", describeNode(item))
				continue
			}
			out = append(out, d.pairs(item, path, depth+1)...)
		}
		return out
	}
	d.report(posOf(val), path, "a << merge needs a mapping or a list of mappings, got %s", describeNode(val))
	return nil
}

func (d *decoder) structure(n *yaml.Node, v reflect.Value, path string, p position) {
	if n.Kind != yaml.MappingNode {
		d.fail(p, path, "expected %s, got %s", describeType(v.Type()), describeNode(n))
		return
	}
	info := structInfoOf(v.Type())
	for _, e := range d.pairs(n, path, 0) {
		name := e.k.Value
		i, ok := info.index[name]
		if !ok {
			hint := didYouMean(name, info.names)
			if hint == "" {
				hint = " (known keys: " + strings.Join(info.names, ", ") + ")"
			}
			d.report(posOf(e.k), path, "unknown key %q%s", name, hint)
			continue
		}
		d.value(e.k, e.v, v.Field(i), joinKey(path, name))
	}
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string, p position) {
	t := v.Type()
	if n.Kind != yaml.MappingNode {
		d.fail(p, path, "expected %s, got %s", describeType(t), describeNode(n))
		return
	}
	if t.Key().Kind() != reflect.String {
		d.fail(p, path, "internal error: map key type %s", t.Key())
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(t))
	}
	for _, e := range d.pairs(n, path, 0) {
		kp := joinKey(path, e.k.Value)
		if strings.TrimSpace(e.k.Value) == "" {
			d.report(posOf(e.k), kp, "empty key")
			continue
		}
		key := reflect.New(t.Key()).Elem()
		key.SetString(e.k.Value)
		if isNull(resolve(e.v)) {
			// "name: ~" removes the entry, e.g. a default group.
			d.pos[kp] = posOf(e.k)
			v.SetMapIndex(key, reflect.Value{})
			continue
		}
		elem := reflect.New(t.Elem()).Elem()
		d.value(e.k, e.v, elem, kp)
		v.SetMapIndex(key, elem)
	}
}

// structInfo maps yaml key names to field indexes.
type structInfo struct {
	index map[string]int
	names []string // sorted, for messages
}

var structInfoCache sync.Map // reflect.Type → *structInfo

func structInfoOf(t reflect.Type) *structInfo {
	if si, ok := structInfoCache.Load(t); ok {
		return si.(*structInfo)
	}
	si := &structInfo{index: map[string]int{}}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		si.index[name] = i
		si.names = append(si.names, name)
	}
	sort.Strings(si.names)
	structInfoCache.Store(t, si)
	return si
}

// describeType names what a value of type t is written as, with an article.
func describeType(t reflect.Type) string {
	switch t {
	case prefixType:
		return "a network (CIDR such as 10.20.0.0/16)"
	case addrType:
		return "an IP address"
	case durationType:
		return "a duration (e.g. 90s, 15m, 12h, 30d)"
	case byteSizeType:
		return "a size (e.g. 64MiB)"
	case clockType:
		return "a time of day (HH:MM)"
	case secretType:
		return `a secret ("file:" or "env:")`
	}
	if reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return "a string"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return describeType(t.Elem())
	case reflect.Struct, reflect.Map:
		return "a mapping"
	case reflect.Slice:
		return "a list"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return t.String()
}

// describeNode names what was written, with an article. It never quotes the
// value (which could be a secret).
func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "nothing"
		case "!!bool":
			return "a boolean"
		case "!!int", "!!float":
			return "a number"
		case "!!timestamp":
			return "a date"
		case "!!binary":
			return "binary data"
		}
		return "a string"
	}
	return "an unsupported YAML node"
}

// joinKey appends a mapping key to a path, quoting keys that are not plain.
func joinKey(path, key string) string {
	plain := key != ""
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			plain = false
			break
		}
	}
	if !plain {
		key = strconv.Quote(key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func joinIndex(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// parentPath strips the last key or index from a path ("" at the top).
func parentPath(path string) string {
	if strings.HasSuffix(path, "]") {
		if i := strings.LastIndexByte(path, '['); i >= 0 {
			return path[:i]
		}
	}
	end := len(path)
	if strings.HasSuffix(path, `"`) {
		// A quoted key: find its opening quote (inner quotes are escaped).
		for i := len(path) - 2; i >= 0; i-- {
			if path[i] == '"' && (i == 0 || path[i-1] != '\\') {
				end = i
				break
			}
		}
	}
	if i := strings.LastIndexByte(path[:end], '.'); i >= 0 {
		return path[:i]
	}
	return ""
}

// parsePrefix reads a network. A single address without a mask is accepted
// as a one-address network (/32 or /128); an IPv4-mapped IPv6 network
// (::ffff:10.20.0.0/112) is the IPv4 network it maps (10.20.0.0/16). Host bits after the mask are an
// error rather than silently cleared: "10.1.2.0/16" is more often a typo for
// /24 than a way of writing 10.1.0.0/16.
func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	bad := fmt.Errorf("invalid network %q (want a CIDR such as 10.20.0.0/16, or a single address)", s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, bad
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, bad
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("network %q has bits set after the /%d mask (did you mean %s?)", s, p.Bits(), m)
	}
	if p.Addr().Is4In6() {
		// Clients are compared as IPv4 (a mapped address is unmapped, as a
		// single address here is), so ::ffff:10.20.0.0/112 would never
		// contain one: it means 10.20.0.0/16. (Masked, a mapped address
		// has all of ::ffff inside the mask: Bits is 96 or more.)
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96), nil
	}
	return p, nil
}

// parseAddr reads an IP address (no zone; IPv4-mapped IPv6 is unmapped).
func parseAddr(s string) (netip.Addr, error) {
	s = strings.TrimSpace(s)
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("invalid IP address %q", s)
	}
	return a.Unmap(), nil
}
