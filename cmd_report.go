package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/gatehouse-filter/gatehouse/console"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// report previews or sends a digest now.
func (c *cli) report(args []string) int {
	if len(args) == 0 || (args[0] != "preview" && args[0] != "send") {
		fmt.Fprintln(c.stderr, "gatehouse report: want `preview --schedule NAME [--out FILE]` or `send --schedule NAME`")
		return exitUsage
	}
	sub := args[0]
	fs := c.flags("report " + sub)
	schedule := fs.String("schedule", "daily", "the digest schedule (reports.digests[].name)")
	out := fs.String("out", "", "preview: write the HTML to this file (the plain text goes to stdout)")
	if pos, err := parse(fs, args[1:]); err != nil || len(pos) > 0 {
		return exitUsage
	}
	cfg, code := c.loadConfig()
	if code != exitOK {
		return code
	}
	p, err := reports.FromConfig(cfg, nil)
	if err != nil && sub == "send" {
		fmt.Fprintln(c.stderr, err)
		return exitFailure
	}
	if err != nil {
		p, _ = reports.FromConfig(withoutSMTPPassword(cfg), nil)
	}
	p.AuditHead = auditHead
	svc, err := reports.Tools(cfg.Database, p)
	if err != nil {
		fmt.Fprintln(c.stderr, err)
		return exitFailure
	}
	defer svc.Close()
	warnPurge(c.stderr, svc)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if sub == "preview" {
		// The preview shows what the digest would tell its recipients:
		// pupils' records, so the look is audited as the console's pages
		// are, naming whose (before anything is printed).
		msgs, err := svc.Digester.Preview(ctx, *schedule)
		if err != nil {
			fmt.Fprintln(c.stderr, err)
			return exitFailure
		}
		var people console.Shown
		for _, m := range msgs {
			for _, who := range m.Shown {
				people.Add(who)
			}
		}
		if !c.auditCLI(c.auditLog(svc.Store.DB()), "view", "digest:"+*schedule, people.Detail("digest preview")) {
			return exitFailure
		}
		if len(msgs) == 0 {
			fmt.Fprintln(c.stderr, "nothing to send for this period (reports.send_empty is off)")
		}
		html := ""
		for _, m := range msgs {
			fmt.Fprintf(c.stdout, "To: %s %v\nSubject: %s\n\n%s\n", m.Role, m.Recipients, m.Subject, m.Text)
			html += m.HTML
		}
		if *out != "" {
			if err := os.WriteFile(*out, []byte(html), 0o600); err != nil {
				fmt.Fprintln(c.stderr, err)
				return exitFailure
			}
			fmt.Fprintf(c.stderr, "HTML written to %s (not sent; the schedule's period was not moved)\n", *out)
		}
		return exitOK
	}
	if !c.auditCLI(c.auditLog(svc.Store.DB()), "digest.send", "digest:"+*schedule, "sent now from the command line") {
		return exitFailure
	}
	msgs, err := svc.Digester.SendNow(ctx, *schedule)
	if err != nil {
		fmt.Fprintln(c.stderr, err)
		return exitFailure
	}
	if _, err := svc.Mailer.DeliverDue(ctx); err != nil {
		fmt.Fprintln(c.stderr, err)
		return exitFailure
	}
	pending, _ := svc.Mailer.Pending()
	for _, m := range msgs {
		fmt.Fprintf(c.stdout, "%s digest for %s %v: %s\n", *schedule, m.Role, m.Recipients, m.Subject)
	}
	if pending > 0 {
		fmt.Fprintf(c.stderr, "%d message(s) not delivered yet; gatehouse serve will keep retrying (see the log)\n", pending)
		return exitFailure
	}
	return exitOK
}
