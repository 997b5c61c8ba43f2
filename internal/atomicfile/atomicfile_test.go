package atomicfile

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestWrite: the file has the content and the mode asked for, whatever
// the umask, replaces an older file, and leaves no temporary file behind.
func TestWrite(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := t.TempDir()
	name := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(name, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(name, []byte("new key"), 0o640); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(name)
	fi, _ := os.Stat(name)
	if err != nil || string(b) != "new key" || fi.Mode().Perm() != 0o640 {
		t.Fatalf("%q %v %v", b, fi.Mode(), err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("%d files in the directory, want 1", len(ents))
	}
	if err := Write(filepath.Join(dir, "missing", "x"), nil, 0o600); err == nil {
		t.Fatal("no error for a missing directory")
	}
}
