package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gatehouse-filter/gatehouse/console"
	"github.com/gatehouse-filter/gatehouse/devices"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// devices enrols, lists and revokes school devices filtered off-site
// (DoH/DoT with a per-device token; package devices).
func (c *cli) devices(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, "gatehouse devices: want add, list or revoke\n")
		return exitUsage
	}
	sub, args := args[0], args[1:]
	fs := c.flags("devices " + sub)
	group := fs.String("group", "", "the device's group (add)")
	pos, err := parse(fs, args)
	if err != nil {
		return exitUsage
	}
	switch sub {
	case "add", "revoke":
		if len(pos) != 1 || (sub == "add" && *group == "") {
			fmt.Fprintf(c.stderr, "usage: gatehouse devices %s NAME%s\n", sub, map[bool]string{true: " --group GROUP"}[sub == "add"])
			return exitUsage
		}
	case "list":
		if len(pos) != 0 {
			fmt.Fprintln(c.stderr, "usage: gatehouse devices list")
			return exitUsage
		}
	default:
		fmt.Fprintf(c.stderr, "gatehouse devices: unknown subcommand %q (want add, list or revoke)\n", sub)
		return exitUsage
	}
	cfg, code := c.loadConfig()
	if code != exitOK {
		return code
	}
	r := cfg.DNS.Remote
	host := strings.TrimSuffix(strings.ToLower(r.Host), ".")
	if sub == "add" {
		if _, ok := cfg.Groups[*group]; !ok {
			fmt.Fprintf(c.stderr, "gatehouse devices add: no group named %q in the config\n", *group)
			return exitUsage
		}
		if host == "" || !r.Enabled() {
			fmt.Fprintln(c.stderr, "gatehouse devices add: set dns.remote (host, doh_listen or dot_listen, certificate) first: the device's URL names the host")
			return exitUsage
		}
	}
	st, err := reports.Open(cfg.Database)
	if err != nil {
		fmt.Fprintln(c.stderr, err)
		return exitFailure
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Enrolling and revoking are in the console's audit log (as
	// cli:USER): an enrolled device's token carries its group's policy.
	// A device is enrolled (and its token shown) only once its row is
	// written.
	var audit *console.Store
	if sub != "list" {
		if audit = c.auditLog(st.DB()); audit == nil {
			return exitFailure
		}
	}
	switch sub {
	case "add":
		tok, err := devices.Add(ctx, st.DB(), pos[0], *group, time.Now())
		if err != nil {
			fmt.Fprintln(c.stderr, err)
			if errors.Is(err, devices.ErrExists) {
				return exitUsage
			}
			return exitFailure
		}
		if !c.auditCLI(audit, "device.add", "device:"+pos[0], "enrolled in group "+*group) {
			if err := devices.Revoke(ctx, st.DB(), pos[0], time.Now()); err != nil {
				fmt.Fprintf(c.stderr, "and the device could not be taken back out (%v): revoke %s\n", err, pos[0])
			}
			return exitFailure
		}
		fmt.Fprintf(c.stdout, "Enrolled %s in group %s. Set one of these on the device (shown once; revoke and add again if lost):\n", pos[0], *group)
		if len(r.DoHListen) > 0 {
			fmt.Fprintf(c.stdout, "DoH URL:  https://%s/dns-query/%s\n", hostPort(host, r.DoHListen[0], "443"), tok)
		}
		if len(r.DoTListen) > 0 {
			fmt.Fprintf(c.stdout, "DoT name: %s.%s", tok, host)
			if _, p, _ := net.SplitHostPort(r.DoTListen[0]); p != "853" {
				fmt.Fprintf(c.stdout, " (port %s)", p)
			}
			fmt.Fprintln(c.stdout)
		}
	case "revoke":
		grp := enrolledGroup(ctx, st, pos[0])
		if err := devices.Revoke(ctx, st.DB(), pos[0], time.Now()); err != nil {
			fmt.Fprintln(c.stderr, err)
			if errors.Is(err, devices.ErrNotFound) {
				return exitUsage
			}
			return exitFailure
		}
		// Revoked whatever the audit log says: refusing the token is the
		// safe side.
		if !c.auditCLI(audit, "device.revoke", "device:"+pos[0], "revoked; was in group "+grp) {
			fmt.Fprintf(c.stderr, "%s is revoked all the same\n", pos[0])
			return exitFailure
		}
		fmt.Fprintf(c.stdout, "Revoked %s: a running gatehouse serve refuses its token within %s.\n", pos[0], r.Reload.D())
	case "list":
		l, err := devices.List(ctx, st.DB())
		if err != nil {
			fmt.Fprintln(c.stderr, err)
			return exitFailure
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tGROUP\tENROLLED\tREVOKED")
		for _, d := range l {
			rev := "-"
			if !d.Revoked.IsZero() {
				rev = d.Revoked.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.Name, d.Group, d.Created.Format(time.RFC3339), rev)
		}
		_ = tw.Flush()
	}
	return exitOK
}

// enrolledGroup is the group of the enrolled device called name, for the
// audit log ("?" if it cannot be read).
func enrolledGroup(ctx context.Context, st *reports.Store, name string) string {
	l, err := devices.List(ctx, st.DB())
	if err != nil {
		return "?"
	}
	for _, d := range l {
		if d.Name == name && d.Revoked.IsZero() {
			return d.Group
		}
	}
	return "?"
}

// hostPort is host, with the listener's port unless it is def.
func hostPort(host, listen, def string) string {
	if _, p, err := net.SplitHostPort(listen); err == nil && p != def && p != "" {
		return net.JoinHostPort(host, p)
	}
	return host
}
