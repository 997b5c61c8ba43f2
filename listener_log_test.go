package main

import (
	"io"
	stdlog "log"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-filter/gatehouse/console"
)

// TestListenerErrorLogBounded: the console's listener takes connections
// from any address (console.allow is read per request), and net/http
// writes a line for every failed TLS handshake. A pupil opening
// connections that send garbage must not write a line per connection,
// nor bypass Gatehouse's logger (its level and log.format) by writing to
// the standard logger: one line goes to Gatehouse's log, the rest are
// counted into the next.
func TestListenerErrorLogBounded(t *testing.T) {
	dir0 := t.TempDir()
	certFile, keyFile := filepath.Join(dir0, "c.pem"), filepath.Join(dir0, "k.pem")
	if _, err := console.SelfSigned(certFile, keyFile, []string{"127.0.0.1"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	path, _ := writeConfig(t, cliConfig+"console: {listen: \"127.0.0.1:0\", cert: "+certFile+", key: "+keyFile+"}\n", cliFiles)
	var code int
	withStdin("auditor passphrase river\n", func() {
		code, _, _ = runCLI(t, "--config", path, "accounts", "add", "gov@school.example", "--role", "auditor")
	})
	if code != exitOK {
		t.Fatalf("add: %d", code)
	}
	var std, logs lockedBuffer
	prev, flags := stdlog.Writer(), stdlog.Flags()
	stdlog.SetOutput(&std)
	t.Cleanup(func() { stdlog.SetOutput(prev); stdlog.SetFlags(flags) })
	s := startServingLog(t, path, &logs)
	if s.consoleAddr == nil {
		t.Fatal("console not started")
	}
	const n = 30
	for range n {
		c, err := net.DialTimeout("tcp", s.consoleAddr.String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.WriteString(c, "garbage, not a ClientHello\r\n\r\n")
		_, _ = io.Copy(io.Discard, c) // the server closes after logging the failure
		c.Close()
	}
	lines := strings.Count(std.String(), "TLS handshake error") + strings.Count(logs.String(), "TLS handshake error")
	if lines != 1 || strings.Contains(std.String(), "TLS handshake error") {
		t.Fatalf("%d failed handshakes wrote %d lines (want 1, in Gatehouse's log)\nstandard logger:\n%s\nGatehouse's log:\n%s",
			n, lines, std.String(), logs.String())
	}
}
