package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSecretRead(t *testing.T) {
	dir := t.TempDir()
	file := func(name, text string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // umask-proof
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("GH_TEST_TOKEN", "Bearer abc123")
	t.Setenv("GH_TEST_EMPTY", "")

	tests := []struct {
		name    string
		s       *Secret
		want    string
		wantErr string
	}{
		{"file", &Secret{File: file("pw", "s3cret\n", 0o600)}, "s3cret", ""},
		{"file with CRLF", &Secret{File: file("crlf", "s3cret\r\n", 0o600)}, "s3cret", ""},
		{"file keeps inner spaces", &Secret{File: file("sp", " a b \n", 0o600)}, " a b ", ""},
		{"empty file", &Secret{File: file("empty", "\n", 0o600)}, "", "is empty"},
		{"missing file", &Secret{File: filepath.Join(dir, "nope")}, "", "no such file"},
		{"large file", &Secret{File: file("big", strings.Repeat("x", maxSecretSize+1), 0o600)}, "", "larger than"},
		{"env", &Secret{Env: "GH_TEST_TOKEN"}, "Bearer abc123", ""},
		{"env unset", &Secret{Env: "GH_TEST_UNSET_VARIABLE"}, "", "is not set"},
		{"env empty", &Secret{Env: "GH_TEST_EMPTY"}, "", "is empty"},
		{"both", &Secret{File: "/x", Env: "Y"}, "", "not both"},
		{"neither", &Secret{}, "", `needs "file:" or "env:"`},
		{"nil", nil, "", "no secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.s.Read()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("error shows the secret: %v", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Read = %q, %v; want %q", got, err, tt.want)
			}
		})
	}

	// Readable by others: a warning, not a failure.
	open := &Secret{File: file("open", "s3cret\n", 0o644)}
	if v, err := open.Read(); err != nil || v != "s3cret" {
		t.Errorf("Read = %q, %v", v, err)
	}
	if w := open.Warning(); !strings.Contains(w, "mode 0644") || strings.Contains(w, "s3cret") {
		t.Errorf("Warning = %q", w)
	}
	if w := (&Secret{File: file("closed", "x\n", 0o600)}).Warning(); w != "" {
		t.Errorf("Warning for 0600 = %q", w)
	}
	if s := open.String(); strings.Contains(s, "s3cret") || !strings.Contains(s, "open") {
		t.Errorf("String = %q", s)
	}

	// Config.Warnings includes secret files, with their key path.
	c, err := Parse([]byte(`lists:
  - name: feed
    url: https://feed.example/list
    category: games
    auth:
      username: school
      password:
        file: `+open.File+`
`), testFile)
	if err != nil {
		t.Fatal(err)
	}
	if w := c.Warnings(); len(w) != 1 || !strings.HasPrefix(w[0], "lists[0].auth.password: secret file") {
		t.Errorf("Warnings = %q", w)
	}
}
