package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// want is one expected error: "line:col" ("0:0" for none), key path, and a
// substring of the message.
type want struct{ pos, path, msg string }

func (w want) String() string { return fmt.Sprintf("%s: %s: ...%s...", w.pos, w.path, w.msg) }

const testFile = "school.yaml"

// parseErrors parses src and returns its errors (nil if it is valid).
func parseErrors(t *testing.T, src string) Errors {
	t.Helper()
	c, err := Parse([]byte(src), testFile)
	if err == nil {
		if c == nil {
			t.Fatal("Parse returned neither a config nor an error")
		}
		return nil
	}
	if c != nil {
		t.Error("Parse returned a config and an error")
	}
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error is %T, not Errors: %v", err, err)
	}
	return errs
}

// checkErrors asserts that src gives exactly the wanted errors, in order.
func checkErrors(t *testing.T, src string, wants []want) {
	t.Helper()
	errs := parseErrors(t, src)
	ok := len(errs) == len(wants)
	for i := 0; ok && i < len(wants); i++ {
		e, w := errs[i], wants[i]
		ok = e.File == testFile && fmt.Sprintf("%d:%d", e.Line, e.Column) == w.pos && e.Path == w.path && strings.Contains(e.Msg, w.msg)
	}
	if !ok {
		var b strings.Builder
		for _, w := range wants {
			b.WriteString("\n  " + w.String())
		}
		t.Errorf("errors:\n%v\nwant:%s", errs, b.String())
	}
}
