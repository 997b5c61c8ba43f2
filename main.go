// Command gatehouse is a web filter for UK schools: a filtering DNS
// resolver and HTTP proxy that apply category blocklists per group of
// clients and report breaches to the Designated Safeguarding Lead.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/policy"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2 // bad command line or invalid config
)

const usage = `Gatehouse: a web filter for UK schools.

Usage:
  gatehouse [serve] [--config FILE]         run the filter (embedded defaults without --config)
  gatehouse config check FILE               validate a config file (exit 0 when valid, 2 when not)
  gatehouse config example                  print a fully commented example config
  gatehouse check [--client IP] [--user NAME] [--at TIME] [--json] NAME-OR-URL
                                            explain the decision for a client and a site
  gatehouse lists stats [--json]            load the blocklists and report their sizes
  gatehouse lists update [NAME...]          download list feeds now
  gatehouse events [--since 24h] [--client X] [--category Y] [--csv|--json]
                                            export breach events (--all: probes and query log too)
  gatehouse incidents [--since 7d] [--status S] [--csv|--json] [--ack ID,...]
                                            list (or acknowledge) incidents
  gatehouse report preview|send --schedule daily [--out digest.html]
                                            render a digest now, or send it (and move its period on)
  gatehouse accounts add EMAIL --role dsl|headteacher|it|auditor [--invite [--by NAME]]
                                            add a console account (password on stdin; prints the authenticator key),
                                            or with --invite mail its owner a one-time link to choose the password
                                            and set up the authenticator app (console.url; works once, for 72 hours)
  gatehouse accounts passwd|totp|disable|enable EMAIL
                                            new password (stdin, or --invite: a mailed one-time link) or
                                            authenticator key, or disable or enable the account
  gatehouse accounts list                   list console accounts
  gatehouse audit [--csv] | audit verify    print the console's audit log, or check its hash chain
  gatehouse ca init [--name N] [--days D] [--force]
                                            create the school's CA for HTTPS block pages
  gatehouse ca export [--der]               print the CA certificate (PEM, or DER)
  gatehouse devices add NAME --group GROUP  enrol a school device for off-site filtering (prints its DoH URL and DoT name)
  gatehouse devices list | revoke NAME      list enrolled devices (no tokens), or revoke one
  gatehouse version                         print the version

Every command takes --config FILE; without it the embedded defaults apply.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a command line and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	// Global --config may come before the command.
	global := flag.NewFlagSet("gatehouse", flag.ContinueOnError)
	global.SetOutput(stderr)
	global.Usage = func() { fmt.Fprint(stderr, usage) }
	cfgPath := global.String("config", "", "config file (default: embedded defaults)")
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	args = global.Args()
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	c := &cli{stdout: stdout, stderr: stderr, cfgPath: *cfgPath}
	switch cmd {
	case "serve":
		return c.serve(args)
	case "config":
		if len(args) == 0 {
			fmt.Fprint(stderr, "gatehouse config: want `check FILE` or `example`\n")
			return exitUsage
		}
		switch args[0] {
		case "check":
			return c.configCheck(args[1:])
		case "example":
			return c.configExample(args[1:])
		}
		fmt.Fprintf(stderr, "gatehouse config: unknown subcommand %q (want check or example)\n", args[0])
		return exitUsage
	case "check":
		return c.check(args)
	case "lists":
		if len(args) == 0 {
			fmt.Fprint(stderr, "gatehouse lists: want `stats` or `update`\n")
			return exitUsage
		}
		switch args[0] {
		case "stats":
			return c.listsStats(args[1:])
		case "update":
			return c.listsUpdate(args[1:])
		}
		fmt.Fprintf(stderr, "gatehouse lists: unknown subcommand %q (want stats or update)\n", args[0])
		return exitUsage
	case "events":
		return c.events(args)
	case "incidents":
		return c.incidents(args)
	case "report":
		return c.report(args)
	case "accounts":
		return c.accounts(args)
	case "audit":
		return c.audit(args)
	case "ca":
		return c.ca(args) // cmd_ca.go
	case "devices":
		return c.devices(args) // cmd_devices.go
	case "version", "--version":
		fmt.Fprintf(stdout, "gatehouse %s\n", version)
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "gatehouse: unknown command %q\n\n%s", cmd, usage)
	return exitUsage
}

// cli carries what every command needs.
type cli struct {
	stdout, stderr io.Writer
	cfgPath        string
}

// flags makes a flag set that also accepts --config after the command.
func (c *cli) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("gatehouse "+name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.StringVar(&c.cfgPath, "config", c.cfgPath, "config file (default: embedded defaults)")
	return fs
}

// parse parses flags, allowing them after positional arguments too.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// loadConfig reads the config file, or the embedded defaults. Invalid
// configs print every error and return exitUsage.
func (c *cli) loadConfig() (*config.Config, int) {
	if c.cfgPath == "" {
		return config.Default(), exitOK
	}
	cfg, err := config.Load(c.cfgPath)
	if err != nil {
		printConfigErrors(c.stderr, err)
		return nil, exitUsage
	}
	return cfg, exitOK
}

func printConfigErrors(w io.Writer, err error) {
	var errs config.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			fmt.Fprintln(w, e.Error())
		}
		fmt.Fprintf(w, "%d error(s); nothing started\n", len(errs))
		return
	}
	fmt.Fprintln(w, strings.TrimSpace(err.Error()))
}

func (c *cli) configCheck(args []string) int {
	fs := c.flags("config check")
	pos, err := parse(fs, args)
	if err != nil {
		return exitUsage
	}
	if len(pos) == 1 {
		c.cfgPath = pos[0]
	} else if len(pos) > 1 || c.cfgPath == "" {
		fmt.Fprintln(c.stderr, "usage: gatehouse config check FILE")
		return exitUsage
	}
	// Unlike serve, the check also reads every file the config names.
	cfg, err := config.LoadChecked(c.cfgPath)
	if err != nil {
		printConfigErrors(c.stderr, err)
		return exitUsage
	}
	// The groups as serve builds them before it starts (or takes a
	// reload): whatever the engine refuses, serve would refuse too.
	if _, err := policy.New(cfg, nil); err != nil {
		fmt.Fprintf(c.stderr, "%s: %v\n", c.cfgPath, err)
		return exitUsage
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(c.stderr, "warning: %s\n", w)
	}
	fmt.Fprintf(c.stdout, "%s: valid\n", c.cfgPath)
	fmt.Fprintln(c.stdout, decryptSummary(cfg))
	return exitOK
}

// decryptSummary says what HTTPS each group decrypts, and that nothing is
// decrypted until the school's CA exists.
func decryptSummary(cfg *config.Config) string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(cfg.Groups)) {
		parts = append(parts, name+" "+cfg.Groups[name].DecryptMode())
	}
	s := "HTTPS decryption (groups.*.decrypt): " + strings.Join(parts, ", ")
	if _, err := os.Stat(cfg.CACertFile()); err != nil {
		return s + "; the school's CA (" + cfg.CACertFile() + ") does not exist yet, so nothing is decrypted (gatehouse ca init)"
	}
	return s + "; the school's CA is " + cfg.CACertFile()
}

func (c *cli) configExample(args []string) int {
	if _, err := parse(c.flags("config example"), args); err != nil {
		return exitUsage
	}
	_, _ = c.stdout.Write(config.Example)
	return exitOK
}
