package watchlist

import (
	"embed"
	"errors"
	"io/fs"
	"path"
	"strings"
)

// The starter lists: small lists the Gatehouse authors wrote, one file per
// language and theme (starter/<language>/<theme>.txt). They are a starting
// point for the school's DSL to review, not a finished list.
//
//go:embed starter
var starterFS embed.FS

// Starter returns the entries of the embedded starter lists.
func Starter() ([]Entry, error) {
	var out []Entry
	var errs []error
	err := fs.WalkDir(starterFS, "starter", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".txt") {
			return err
		}
		t, err := ParseTheme(strings.TrimSuffix(path.Base(p), ".txt"))
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		f, err := starterFS.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		es, err := Parse(f, "(embedded) "+p, t)
		errs = append(errs, err)
		out = append(out, es...)
		return nil
	})
	errs = append(errs, err)
	return out, errors.Join(errs...)
}

// Default compiles the starter lists with the default theme settings.
func Default() (*Watchlist, error) {
	es, err := Starter()
	if err != nil {
		return nil, err
	}
	return Compile(es, DefaultSettings())
}
