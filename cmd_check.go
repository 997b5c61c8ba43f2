package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"text/tabwriter"
	"time"

	"github.com/gatehouse-filter/gatehouse/explain"
	"github.com/gatehouse-filter/gatehouse/policy"
)

// checkOutput is the JSON form of `gatehouse check`: explain's answer
// and, for a search engine's URL, the search the proxy would read
// (cmd_check_search.go).
type checkOutput struct {
	explain.Result
	Search *checkSearch `json:"search,omitempty"`
}

func (c *cli) check(args []string) int {
	fs := c.flags("check")
	client := fs.String("client", "127.0.0.1", "client IP address")
	user := fs.String("user", "", "user name (as the proxy would know it)")
	at := fs.String("at", "", "time to decide at: RFC 3339 or \"YYYY-MM-DD HH:MM\" in the school's time zone (default now)")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return exitUsage
	}
	if len(pos) != 1 {
		fmt.Fprintln(c.stderr, "usage: gatehouse check [--client IP] [--user NAME] [--at TIME] [--json] NAME-OR-URL")
		return exitUsage
	}
	addr, err := netip.ParseAddr(*client)
	if err != nil {
		fmt.Fprintf(c.stderr, "gatehouse check: --client %q is not an IP address\n", *client)
		return exitUsage
	}
	if _, _, err := explain.SplitTarget(pos[0]); err != nil {
		fmt.Fprintf(c.stderr, "gatehouse check: %q: %v\n", pos[0], err)
		return exitUsage
	}
	cfg, lists, code := c.configAndLists("check")
	if code != exitOK {
		return code
	}
	when := time.Now()
	if *at != "" {
		if when, err = explain.ParseAt(*at, cfg.Location()); err != nil {
			fmt.Fprintf(c.stderr, "gatehouse check: --at: %v\n", err)
			return exitUsage
		}
	}
	lists.NoFetch = true
	ix, err := lists.Load(context.Background())
	if err != nil {
		fmt.Fprintf(c.stderr, "gatehouse check: loading lists: %v\n", err)
		return exitFailure
	}
	eng, err := policy.New(cfg, ix)
	if err != nil {
		fmt.Fprintf(c.stderr, "gatehouse check: %v\n", err)
		return exitUsage
	}
	r, err := explain.Run(cfg, eng, explain.Input{Target: pos[0], Client: addr, User: *user, At: when})
	if err != nil {
		fmt.Fprintf(c.stderr, "gatehouse check: %v\n", err)
		return exitUsage
	}
	out := checkOutput{Result: r, Search: searchOf(eng, r, pos[0])}
	if *asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
		return exitOK
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	for _, l := range r.Lines {
		if l.Label == "at" && out.Search != nil {
			out.Search.print(tw) // before the time, as the rest of the answer
		}
		fmt.Fprintf(tw, "%s\t%s\n", l.Label, l.Text)
	}
	_ = tw.Flush()
	return exitOK
}

// clientAllowed is the front doors' ACL (clients.allow); see
// explain.ClientAllowed.
func clientAllowed(allow []netip.Prefix, ip netip.Addr) bool { return explain.ClientAllowed(allow, ip) }
