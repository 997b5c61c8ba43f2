package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-filter/gatehouse/blocklists"
)

func TestExampleIsValid(t *testing.T) {
	c, err := Parse(Example, "example.yaml")
	if err != nil {
		t.Fatalf("example config:\n%v", err)
	}
	if w := c.Warnings(); len(w) > 0 {
		t.Errorf("example warnings: %q", w)
	}
	if c.School.Name != "Hillside Academy" || len(c.Lists) < 5 || len(c.Groups) != 3 {
		t.Errorf("example not as expected: %+v", c)
	}
	var restricted []string
	for _, l := range c.Lists {
		if cat, err := blocklists.ParseCategory(l.Category); err == nil && cat.Restricted() {
			restricted = append(restricted, l.Name)
		}
	}
	if !slices.Equal(restricted, []string{"iwf", "ctiru"}) {
		t.Errorf("restricted lists in the example = %v", restricted)
	}
}

// The example must show every key of the schema.
func TestExampleShowsEveryKey(t *testing.T) {
	text := string(Example)
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type, where string)
	walk = func(typ reflect.Type, where string) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Map {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || seen[typ] || typ.PkgPath() != reflect.TypeFor[Config]().PkgPath() {
			return
		}
		seen[typ] = true
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			if !regexp.MustCompile(`(?m)^\s*(- )?` + regexp.QuoteMeta(name) + `:`).MatchString(text) {
				t.Errorf("example.yaml does not show %s.%s", where, name)
			}
			walk(f.Type, where+"."+name)
		}
	}
	walk(reflect.TypeFor[Config](), "config")
}

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults invalid:\n%v", err)
	}
	if c.Location().String() != "Europe/London" {
		t.Errorf("location = %v", c.Location())
	}
	if c.DNS.Listen[0] != "127.0.0.1:5353" || c.Proxy.Listen != "127.0.0.1:3128" || c.Admin.Listen != "127.0.0.1:9153" {
		t.Errorf("listeners = %v %v %v", c.DNS.Listen, c.Proxy.Listen, c.Admin.Listen)
	}
	if len(c.DNS.Upstreams) != 0 || c.DNS.BlockTTL.D() != time.Minute || c.DNS.BlockResponse != "nxdomain" {
		t.Errorf("dns = %+v", c.DNS)
	}
	if len(c.Clients.Allow) != 9 || c.Clients.DefaultGroup != "students" || len(c.Lists) != 0 {
		t.Errorf("clients = %+v, lists = %v", c.Clients, c.Lists)
	}

	blocks := func(g string) blocklists.CategorySet {
		var s blocklists.CategorySet
		for _, n := range c.Groups[g].Block {
			cat, err := blocklists.ParseCategory(n)
			if err != nil {
				t.Fatal(err)
			}
			s = s.Add(cat)
		}
		return s
	}
	inappropriate := blocklists.SetOfKind(blocklists.KindInappropriate)
	bypass := blocklists.SetOfKind(blocklists.KindBypass)
	pupils := inappropriate | bypass | blocklists.SetOf(blocklists.Dating)
	for g, want := range map[string]struct {
		set  blocklists.CategorySet
		safe string
	}{
		"students": {pupils, "strict"},
		"staff":    {inappropriate | bypass, "moderate"},
		"guests":   {pupils, "strict"},
	} {
		if got := blocks(g); got != want.set {
			t.Errorf("%s blocks %v, want %v", g, got, want.set)
		}
		if c.Groups[g].SafeSearch != want.safe || c.Groups[g].Name != g || len(c.Groups[g].Networks) != 0 || len(c.Groups[g].Schedules) != 0 {
			t.Errorf("%s = %+v", g, c.Groups[g])
		}
	}
	if a, b := Default(), Default(); &a.Groups["staff"].Block[0] == &b.Groups["staff"].Block[0] {
		t.Error("Default shares state between calls")
	}
}

func TestOverlay(t *testing.T) {
	c, err := Parse([]byte(`school:
  name: Hillside Academy
dns:
  listen: ["0.0.0.0:53"]
  upstreams: [9.9.9.9, "2620:fe::fe", "1.1.1.1:5353"]
clients:
  allow: [10.0.0.0/8]
categories:
  games:
    route: NONE
groups:
  staff:
    block: [games]
  guests: ~
  sixth-form:
    networks: [10.40.0.0/16]
    block: [Pornography]
`), testFile)
	if err != nil {
		t.Fatal(err)
	}
	// Sections merge key by key.
	if c.School.Timezone != "Europe/London" || c.DNS.BlockTTL.D() != time.Minute || c.DNS.BlockResponse != "nxdomain" {
		t.Errorf("defaults lost: %+v %+v", c.School, c.DNS)
	}
	if !slices.Equal(c.DNS.Listen, []string{"0.0.0.0:53"}) {
		t.Errorf("listen = %v", c.DNS.Listen)
	}
	if !slices.Equal(c.DNS.Upstreams, []string{"9.9.9.9:53", "[2620:fe::fe]:53", "1.1.1.1:5353"}) {
		t.Errorf("upstreams = %v", c.DNS.Upstreams)
	}
	// Lists replace whole.
	if len(c.Clients.Allow) != 1 {
		t.Errorf("allow = %v", c.Clients.Allow)
	}
	// A group in the file replaces the default group of that name; others
	// stay unless removed with null.
	staff := c.Groups["staff"]
	if !slices.Equal(staff.Block, []string{"games"}) || staff.SafeSearch != "strict" || staff.Description != "" {
		t.Errorf("staff = %+v", staff)
	}
	if s := c.Groups["students"]; s == nil || len(s.Block) != len(Default().Groups["students"].Block) {
		t.Errorf("students = %+v", s)
	}
	if _, ok := c.Groups["guests"]; ok {
		t.Error("guests not removed")
	}
	if g := c.Groups["sixth-form"]; g == nil || g.Name != "sixth-form" || !slices.Equal(g.Block, []string{"pornography"}) {
		t.Errorf("sixth-form = %+v", g)
	}
	if c.Categories["games"].Route != "none" {
		t.Errorf("categories = %+v", c.Categories)
	}
	if c.Source != testFile {
		t.Errorf("source = %q", c.Source)
	}
	// The defaults themselves are untouched.
	if d := Default(); len(d.Groups) != 3 || len(d.Groups["staff"].Block) == 1 {
		t.Error("Parse changed the defaults")
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gatehouse.yaml")
	if err := os.WriteFile(path, []byte("database: /var/lib/gatehouse/gh.db\nschool:\n  timezone: Europe/Dublin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Source != path || c.Dir() != "/var/lib/gatehouse" || c.ListsCacheDir() != "/var/lib/gatehouse/lists/cache" || c.OutboxDir() != "/var/lib/gatehouse/outbox" {
		t.Errorf("dirs: %q %q %q %q", c.Source, c.Dir(), c.ListsCacheDir(), c.OutboxDir())
	}
	if c.Location().String() != "Europe/Dublin" {
		t.Errorf("location = %v", c.Location())
	}
	if d := Default(); d.Dir() != "." || d.OutboxDir() != "outbox" {
		t.Errorf("default dirs %q %q", d.Dir(), d.OutboxDir())
	}

	if err := os.WriteFile(path, []byte("school:\n  timezone: Nowhere/Town\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path)
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 1 || errs[0].File != path || errs[0].Line != 2 || errs[0].Column != 13 {
		t.Errorf("invalid file: %v", err)
	}

	_, err = Load(filepath.Join(dir, "missing.yaml"))
	if !errors.As(err, &errs) || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "missing.yaml: cannot read config: no such file") {
		t.Errorf("missing file: %v", err)
	}
}

func TestDayMask(t *testing.T) {
	for _, tt := range []struct {
		days []string
		want uint8
	}{
		{[]string{"weekdays"}, 0b0111110},
		{[]string{"weekend"}, 0b1000001},
		{[]string{"daily"}, 0b1111111},
		{[]string{"mon", "Wednesday", "FRI"}, 1<<time.Monday | 1<<time.Wednesday | 1<<time.Friday},
		{[]string{"sun", "bogus"}, 1 << time.Sunday},
	} {
		if got := (TimeWindow{Days: tt.days}).DayMask(); got != tt.want {
			t.Errorf("%v: %07b, want %07b", tt.days, got, tt.want)
		}
	}
}
