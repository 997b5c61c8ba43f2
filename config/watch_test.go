package config

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestWatch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gatehouse.yaml")
	write := func(text string) {
		t.Helper()
		// Write-and-rename, as editors and config management do.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write("school:\n  name: First\n")

	changes := make(chan *Config, 10)
	errs := make(chan error, 10)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		Watch(ctx, path, 10*time.Millisecond, func(c *Config) { changes <- c }, func(err error) { errs <- err })
	}()
	defer func() {
		cancel()
		wg.Wait()
	}()

	const timeout = 30 * time.Second // a wait that ends as soon as the change is seen
	quiet := func(d time.Duration) {
		t.Helper()
		select {
		case c := <-changes:
			t.Fatalf("unexpected change: %q", c.School.Name)
		case err := <-errs:
			t.Fatalf("unexpected error: %v", err)
		case <-time.After(d):
		}
	}
	// Unchanged file: nothing.
	quiet(100 * time.Millisecond)

	// A valid change.
	write("school:\n  name: Second Academy\n")
	select {
	case c := <-changes:
		if c.School.Name != "Second Academy" || c.Source != path {
			t.Errorf("new config %q from %q", c.School.Name, c.Source)
		}
	case err := <-errs:
		t.Fatalf("error: %v", err)
	case <-time.After(timeout):
		t.Fatal("no change seen")
	}

	// An invalid change: reported once, no onChange.
	write("school:\n  name: Third\n  timezone: Nowhere/Town\n")
	select {
	case err := <-errs:
		if !strings.Contains(err.Error(), path+":3:13: school.timezone: unknown time zone") {
			t.Errorf("error = %v", err)
		}
	case c := <-changes:
		t.Fatalf("invalid config delivered: %q", c.School.Name)
	case <-time.After(timeout):
		t.Fatal("no error seen")
	}
	quiet(200 * time.Millisecond)

	// A missing file is an error (once); coming back valid is a change.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		if !strings.Contains(err.Error(), "cannot read config") {
			t.Errorf("error = %v", err)
		}
	case <-time.After(timeout):
		t.Fatal("no error for missing file")
	}
	quiet(100 * time.Millisecond)
	write("school:\n  name: Fourth\n")
	select {
	case c := <-changes:
		if c.School.Name != "Fourth" {
			t.Errorf("name %q", c.School.Name)
		}
	case err := <-errs:
		t.Fatalf("error: %v", err)
	case <-time.After(timeout):
		t.Fatal("no change after fix")
	}
}

// Watch returns when its context ends.
func TestWatchStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		Watch(ctx, filepath.Join(t.TempDir(), "none.yaml"), time.Millisecond, nil, nil)
		close(done)
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return")
	}
}
