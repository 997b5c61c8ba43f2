package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse-filter/gatehouse/tlsinspect"
)

// ca runs `gatehouse ca init|export`.
func (c *cli) ca(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, "gatehouse ca: want `init` or `export`\n")
		return exitUsage
	}
	switch args[0] {
	case "init":
		return c.caInit(args[1:])
	case "export":
		return c.caExport(args[1:])
	}
	fmt.Fprintf(c.stderr, "gatehouse ca: unknown subcommand %q (want init or export)\n", args[0])
	return exitUsage
}

func (c *cli) caInit(args []string) int {
	fs := c.flags("ca init")
	name := fs.String("name", "", "the CA's name as devices show it (default: \"<school> web filter CA\")")
	org := fs.String("org", "", "organisation (default: the school's name)")
	days := fs.Int("days", int(tlsinspect.DefaultValidity/(24*time.Hour)), "validity in days (at most 3650)")
	force := fs.Bool("force", false, "replace an existing CA (every device must then be given the new one)")
	if pos, err := parse(fs, args); err != nil || len(pos) > 0 {
		return exitUsage
	}
	if *days < 1 || *days > 3650 {
		fmt.Fprintln(c.stderr, "gatehouse ca init: --days must be between 1 and 3650")
		return exitUsage
	}
	cfg, code := c.loadConfig()
	if code != exitOK {
		return code
	}
	if *org == "" {
		*org = cfg.School.Name
	}
	if *name == "" {
		*name = cfg.School.Name + " web filter CA"
	}
	ca, err := tlsinspect.Init(cfg.CACertFile(), cfg.CAKeyFile(), tlsinspect.InitOptions{
		Name: *name, Org: *org, Validity: time.Duration(*days) * 24 * time.Hour, Force: *force,
	})
	if err != nil {
		fmt.Fprintf(c.stderr, "gatehouse ca init: %v\n", err)
		if errors.Is(err, tlsinspect.ErrExists) {
			return exitUsage
		}
		return exitFailure
	}
	fmt.Fprintf(c.stdout, "created %q, valid until %s\n  certificate: %s\n  key:         %s (keep it secret; 0600)\n  SHA-256:     %s\n",
		ca.Cert.Subject.CommonName, ca.Cert.NotAfter.Format("2 January 2006"), cfg.CACertFile(), cfg.CAKeyFile(), tlsinspect.Fingerprint(ca.DER))
	fmt.Fprintln(c.stdout, "Install the certificate on managed devices (the admin listener's /ca page says how), then restart gatehouse.")
	return exitOK
}

func (c *cli) caExport(args []string) int {
	fs := c.flags("ca export")
	der := fs.Bool("der", false, "print DER (binary) instead of PEM")
	if pos, err := parse(fs, args); err != nil || len(pos) > 0 {
		return exitUsage
	}
	cfg, code := c.loadConfig()
	if code != exitOK {
		return code
	}
	_, raw, err := tlsinspect.LoadCert(cfg.CACertFile())
	if err != nil {
		fmt.Fprintf(c.stderr, "gatehouse ca export: %v (run `gatehouse ca init` first)\n", err)
		return exitFailure
	}
	if *der {
		_, _ = c.stdout.Write(raw)
		return exitOK
	}
	_, _ = c.stdout.Write((&tlsinspect.CA{DER: raw}).PEM())
	return exitOK
}
