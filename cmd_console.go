package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/console"
	"github.com/gatehouse-filter/gatehouse/internal/peraddr"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// stdin is where account commands read passwords (tests replace it).
var stdin io.Reader = os.Stdin

// consoleStore opens the database (creating it, 0600, for accounts add)
// and the console's tables.
func (c *cli) consoleStore(cfg *config.Config, create bool) (*reports.Store, *console.Store, int) {
	if _, err := os.Stat(cfg.Database); errors.Is(err, os.ErrNotExist) {
		if !create {
			fmt.Fprintf(c.stderr, "no database at %s yet (gatehouse serve or gatehouse accounts add creates it)\n", cfg.Database)
			return nil, nil, exitFailure
		}
		if err := os.MkdirAll(filepath.Dir(cfg.Database), 0o750); err != nil {
			fmt.Fprintf(c.stderr, "database directory: %v\n", err)
			return nil, nil, exitFailure
		}
	}
	rep, err := reports.Open(cfg.Database)
	if err != nil {
		fmt.Fprintln(c.stderr, err)
		return nil, nil, exitFailure
	}
	st, err := console.NewStore(rep.DB())
	if err != nil {
		rep.Close()
		fmt.Fprintln(c.stderr, err)
		return nil, nil, exitFailure
	}
	return rep, st, exitOK
}

// cliActor names the person at the command line for the audit log.
func cliActor() string {
	if u, err := user.Current(); err == nil {
		return "cli:" + u.Username
	}
	return "cli:uid" + fmt.Sprint(os.Getuid())
}

// readPassword reads a new password: asked twice on a terminal, one
// line otherwise.
func (c *cli) readPassword() (string, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(c.stderr, "New password (at least 12 characters; a passphrase of unrelated words is good): ")
		a, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(c.stderr)
		if err != nil {
			return "", err
		}
		fmt.Fprint(c.stderr, "Again: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(c.stderr)
		if err != nil {
			return "", err
		}
		if string(a) != string(b) {
			return "", errors.New("the two passwords differ")
		}
		return string(a), nil
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("no password on stdin")
	}
	return line, nil
}

// printTOTP shows how to enrol an authenticator app.
func (c *cli) printTOTP(cfg *config.Config, email, secret string) {
	fmt.Fprintf(c.stdout, "Authenticator app for %s: add an account with this key (time-based, 6 digits, 30 s):\n  %s\n", email, console.GroupKey(secret))
	fmt.Fprintf(c.stdout, "or open this link on the phone:\n  %s\n", console.TOTPURI("Gatehouse ("+cfg.School.Name+")", email, secret))
	fmt.Fprintln(c.stdout, "Give the key to its owner privately; it is not shown again.")
}

func (c *cli) accounts(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, "gatehouse accounts: want add, passwd, totp, disable, enable or list\n")
		return exitUsage
	}
	sub, args := args[0], args[1:]
	fs := c.flags("accounts " + sub)
	role := fs.String("role", "", "dsl, headteacher, it or auditor (add)")
	withTOTP := fs.Bool("totp", false, "give an auditor account a second factor too (add; the other roles always have one)")
	invite := fs.Bool("invite", false, "add, passwd: mail the person a one-time link (console.url) to choose the password, instead of reading it on stdin")
	by := fs.String("by", "", "with --invite: who the mail says sent it (default \"IT at SCHOOL\")")
	pos, err := parse(fs, args)
	if err != nil {
		return exitUsage
	}
	switch sub {
	case "add", "passwd", "totp", "disable", "enable":
		if len(pos) != 1 {
			fmt.Fprintf(c.stderr, "usage: gatehouse accounts %s EMAIL%s\n", sub, map[bool]string{true: " --role ROLE"}[sub == "add"])
			return exitUsage
		}
	case "list":
		if len(pos) != 0 {
			fmt.Fprintln(c.stderr, "usage: gatehouse accounts list")
			return exitUsage
		}
	default:
		fmt.Fprintf(c.stderr, "gatehouse accounts: unknown subcommand %q (want add, passwd, totp, disable, enable or list)\n", sub)
		return exitUsage
	}
	if sub == "add" && !console.ValidRole(*role) {
		fmt.Fprintf(c.stderr, "gatehouse accounts add: --role must be one of %s\n", strings.Join(console.Roles, ", "))
		return exitUsage
	}
	cfg, code := c.loadConfig()
	if code != exitOK {
		return code
	}
	rep, st, code := c.consoleStore(cfg, sub == "add")
	if code != exitOK {
		return code
	}
	defer rep.Close()
	now, actor := time.Now(), cliActor()
	fail := func(err error) int {
		fmt.Fprintf(c.stderr, "gatehouse accounts %s: %v\n", sub, err)
		if errors.Is(err, console.ErrWeakPassword) {
			return exitUsage
		}
		return exitFailure
	}
	if *invite {
		if sub != "add" && sub != "passwd" {
			fmt.Fprintf(c.stderr, "gatehouse accounts %s: --invite goes with add or passwd\n", sub)
			return exitUsage
		}
		return c.invite(cfg, rep, st, sub == "passwd", pos[0], *role, *withTOTP, *by, actor, now)
	}
	switch sub {
	case "add":
		email := console.NormalEmail(pos[0])
		if err := console.ValidEmail(email); err != nil {
			return fail(err)
		}
		if _, err := st.Account(email); err == nil {
			return fail(fmt.Errorf("account %s already exists", email))
		}
		pw, err := c.readPassword()
		if err != nil {
			return fail(err)
		}
		secret := ""
		if console.TOTPRequired(*role) || *withTOTP {
			if secret, err = console.NewTOTPSecret(); err != nil {
				return fail(err)
			}
		}
		if err := st.AddAccount(actor, "cli", email, *role, pw, secret, now); err != nil {
			return fail(err)
		}
		fmt.Fprintf(c.stdout, "account %s added (%s)\n", email, *role)
		if secret != "" {
			c.printTOTP(cfg, email, secret)
		}
	case "passwd":
		if _, err := st.Account(pos[0]); err != nil {
			return fail(err)
		}
		pw, err := c.readPassword()
		if err != nil {
			return fail(err)
		}
		if err := st.SetPassword(actor, "cli", pos[0], pw, now); err != nil {
			return fail(err)
		}
		fmt.Fprintf(c.stdout, "password changed for %s; its sessions have ended\n", console.NormalEmail(pos[0]))
	case "totp":
		secret, err := console.NewTOTPSecret()
		if err != nil {
			return fail(err)
		}
		if err := st.SetTOTP(actor, "cli", pos[0], secret, now); err != nil {
			return fail(err)
		}
		c.printTOTP(cfg, console.NormalEmail(pos[0]), secret)
	case "disable":
		if err := st.Disable(actor, "cli", pos[0], now); err != nil {
			return fail(err)
		}
		fmt.Fprintf(c.stdout, "account %s disabled; its sessions have ended\n", console.NormalEmail(pos[0]))
	case "enable":
		changed, err := st.Enable(actor, "cli", pos[0], now)
		if err != nil {
			return fail(err)
		}
		if !changed {
			fmt.Fprintf(c.stdout, "account %s is already active\n", console.NormalEmail(pos[0]))
			break
		}
		fmt.Fprintf(c.stdout, "account %s enabled: it can sign in again\n", console.NormalEmail(pos[0]))
	case "list":
		list, err := st.Accounts()
		if err != nil {
			return fail(err)
		}
		loc := cfg.Location()
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		invites, err := st.Invitations()
		if err != nil {
			return fail(err)
		}
		fmt.Fprintln(tw, "EMAIL\tROLE\tSECOND FACTOR\tSTATE\tCHANGED")
		for _, a := range list {
			state := "active"
			if exp, ok := invites[a.ID]; ok {
				state = "link sent, until " + exp.In(loc).Format("2006-01-02 15:04")
				if !now.Before(exp) {
					state = "link expired"
				}
			}
			if a.Disabled {
				state = "disabled"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.Email, a.Role, map[bool]string{true: "totp", false: "none"}[a.TOTP], state, a.Changed.In(loc).Format("2006-01-02 15:04"))
		}
		tw.Flush()
		if len(list) == 0 {
			fmt.Fprintln(c.stderr, "no accounts yet: gatehouse accounts add EMAIL --role dsl")
		}
	}
	return exitOK
}

// audit prints the console's audit log, or checks its hash chain.
func (c *cli) audit(args []string) int {
	fs := c.flags("audit")
	asCSV := fs.Bool("csv", false, "CSV (RFC 4180, safe to open in a spreadsheet)")
	at := fs.String("at", "", "with verify: a digest's audit log fingerprint, ID:HASH; the entry must still end the chain up to it as it did")
	pos, err := parse(fs, args)
	if err != nil || len(pos) > 1 || (len(pos) == 1 && pos[0] != "verify") || (*at != "" && len(pos) == 0) {
		fmt.Fprintln(c.stderr, "usage: gatehouse audit [--csv] | gatehouse audit verify [--at ID:FINGERPRINT]")
		return exitUsage
	}
	var atID int64
	var atFP string
	if *at != "" {
		id, fp, ok := strings.Cut(*at, ":")
		if atID, err = strconv.ParseInt(id, 10, 64); !ok || err != nil || atID <= 0 {
			fmt.Fprintf(c.stderr, "--at %q: want ID:FINGERPRINT as a digest prints it (1234:5f3c8a91d2e4b7c0)\n", *at)
			return exitUsage
		}
		atFP = fp
	}
	cfg, code := c.loadConfig()
	if code != exitOK {
		return code
	}
	rep, st, code := c.consoleStore(cfg, false)
	if code != exitOK {
		return code
	}
	defer rep.Close()
	if len(pos) == 1 {
		var bad int64
		if atID > 0 {
			bad, err = st.VerifyAuditAt(atID, atFP)
		} else {
			bad, err = st.VerifyAudit()
		}
		if err != nil {
			fmt.Fprintln(c.stderr, err)
			return exitFailure
		}
		switch {
		case bad == atID && atID > 0:
			fmt.Fprintf(c.stdout, "audit log: entry %d is gone or no longer has the fingerprint the digest gave: the log up to it was removed or written anew outside Gatehouse\n", atID)
			return exitFailure
		case bad != 0:
			fmt.Fprintf(c.stdout, "audit log: the hash chain breaks at entry %d: it or an entry before it was changed or removed outside Gatehouse\n", bad)
			return exitFailure
		case atID > 0:
			fmt.Fprintf(c.stdout, "audit log: hash chain intact, and entry %d still ends it as the digest said: nothing up to it was changed or removed\n", atID)
			return exitOK
		}
		fmt.Fprintln(c.stdout, "audit log: hash chain intact")
		return exitOK
	}
	// Reading the log is itself written to it first, as in the console.
	action, detail := "view", "audit log"
	if *asCSV {
		action, detail = "export", "audit log CSV"
	}
	if !c.auditCLI(st, action, "audit", detail) {
		return exitFailure
	}
	log, err := st.AuditLog()
	if err != nil {
		fmt.Fprintln(c.stderr, err)
		return exitFailure
	}
	loc := cfg.Location()
	if *asCSV {
		w := csv.NewWriter(c.stdout)
		_ = w.Write([]string{"id", "time", "actor", "address", "action", "target", "detail", "hash"})
		for _, e := range log {
			_ = w.Write([]string{fmt.Sprint(e.ID), e.Time.In(loc).Format(time.RFC3339), reports.SafeCell(e.Actor), e.Addr, e.Action,
				reports.SafeCell(e.Target), reports.SafeCell(e.Detail), e.Hash})
		}
		w.Flush()
		if err := w.Error(); err != nil {
			fmt.Fprintln(c.stderr, err)
			return exitFailure
		}
		return exitOK
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tWHO\tFROM\tWHAT\tTARGET\tDETAIL")
	for _, e := range log {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.Time.In(loc).Format("2006-01-02 15:04:05"), e.Actor, e.Addr, e.Action, e.Target, e.Detail)
	}
	tw.Flush()
	return exitOK
}

// startConsole serves the safeguarding console on console.listen, once an
// account exists (nothing listens for a console nobody can use). Changes
// to console.* other than allow take effect at the next restart.
func (s *server) startConsole(ctx context.Context, cfg *config.Config) error {
	if cfg.ConsoleOff() || s.reports == nil {
		return nil
	}
	log := s.log.With("part", "console")
	st, err := console.NewStore(s.reports.Store.DB())
	if err != nil {
		return err
	}
	accts, err := st.Accounts()
	if err != nil {
		return err
	}
	if len(accts) == 0 {
		log.Info("console not started: no accounts yet (gatehouse accounts add EMAIL --role dsl, then restart)")
		return nil
	}
	certFile, keyFile, selfSigned, useTLS := cfg.ConsoleTLS()
	var tlsCfg *tls.Config
	var cert tls.Certificate
	if useTLS {
		if selfSigned {
			host, _, _ := net.SplitHostPort(cfg.Console.Listen)
			cert, err = console.SelfSigned(certFile, keyFile, []string{host, "localhost"}, time.Now())
		} else {
			cert, err = tls.LoadX509KeyPair(certFile, keyFile)
		}
		if err != nil {
			return fmt.Errorf("console certificate: %w", err)
		}
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	}
	oidc, err := consoleOIDC(cfg) // cmd_console_it.go
	if err != nil {
		return err
	}
	h, err := console.New(console.Options{
		Store: st, Incidents: s.reports.Store, School: cfg.School.Name, Location: cfg.Location(), TLS: useTLS,
		Idle: cfg.Console.IdleTimeout.D(), Absolute: cfg.Console.SessionLimit.D(), Log: log,
		Allow:   func() []netip.Prefix { return s.engine.Load().Config().ConsoleAllow() },
		IT:      s.consoleIT(&cert, certFile),
		OIDC:    oidc,
		Cases:   s.reports.Store,
		FullLog: func() bool { return s.engine.Load().Config().DNS.QueryLog.Enabled },
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Console.Listen)
	if err != nil {
		return fmt.Errorf("console.listen: %w", err)
	}
	ln = peraddr.Limit(ln, consoleMaxConns, consoleMaxConnsPerAddr) // serve_blockpage.go: any address can connect (console.allow is read per request)
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	s.consoleAddr = ln.Addr()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10}
	serveUntil(ctx, srv, ln, log, "console") // ln is already TLS when it should be
	scheme := "http"
	if useTLS {
		scheme = "https"
	}
	log.Info("console listening", "url", scheme+"://"+ln.Addr().String()+"/", "accounts", len(accts), "self_signed", selfSigned)
	return nil
}

// invite creates an account (or, reset, clears one's password) and mails
// its owner a one-time link to choose the password, through the reports
// outbox and the configured SMTP relay; delivery is tried now, and
// gatehouse serve retries it if the relay is down.
func (c *cli) invite(cfg *config.Config, rep *reports.Store, st *console.Store, reset bool, email, role string, withTOTP bool, by, actor string, now time.Time) int {
	sub := map[bool]string{true: "passwd", false: "add"}[reset]
	if cfg.Console.URL == "" {
		fmt.Fprintf(c.stderr, "gatehouse accounts %s --invite: console.url is not set in %s, so the mail cannot link to the console; set it to the console's address as staff reach it (e.g. https://filter.school.example:8080)\n", sub, c.cfgPath)
		return exitUsage
	}
	p, err := reports.FromConfig(cfg, nil) // reads the SMTP password
	if err != nil {
		fmt.Fprintf(c.stderr, "gatehouse accounts %s: %v\n", sub, err)
		return exitFailure
	}
	before, err := st.Accounts()
	if err != nil {
		fmt.Fprintf(c.stderr, "gatehouse accounts %s: %v\n", sub, err)
		return exitFailure
	}
	id, err := st.NewInvite(actor, "cli", email, role, reset, withTOTP, console.InviteMail{ConsoleURL: cfg.Console.URL, School: cfg.School.Name,
		By: by, Location: cfg.Location()}, now)
	if err != nil {
		fmt.Fprintf(c.stderr, "gatehouse accounts %s: %v\n", sub, err)
		return exitFailure
	}
	email = console.NormalEmail(email)
	if reset {
		fmt.Fprintf(c.stdout, "password of %s cleared and its sessions ended; ", email)
	} else {
		fmt.Fprintf(c.stdout, "account %s added (%s) with no password yet; ", email, role)
	}
	fmt.Fprintf(c.stdout, "a one-time link to choose one is mailed to %s and works until %s\n", email, now.Add(console.InviteTTL).In(cfg.Location()).Format("2006-01-02 15:04"))
	if len(before) == 0 && !cfg.ConsoleOff() {
		fmt.Fprintln(c.stdout, "this is the first account: restart gatehouse serve so the console starts and the link works")
	}
	// Only this message: the rest of the outbox is gatehouse serve's.
	m := reports.NewMailer(rep, p.Mail, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sent, err := m.DeliverOne(ctx, id)
	if err != nil {
		fmt.Fprintf(c.stderr, "gatehouse accounts %s: delivering mail: %v\n", sub, err)
		return exitFailure
	}
	if !sent {
		why := ""
		if _, err := m.Healthy(); err != nil {
			why = " (" + err.Error() + ")"
		}
		fmt.Fprintf(c.stderr, "the mail is not delivered yet%s; gatehouse serve will keep retrying (see the log)\n", why)
		return exitFailure
	}
	if p.Mail.Host == "" {
		fmt.Fprintf(c.stdout, "no reports.smtp relay is set: the mail is an .eml file in %s for you to send on\n", p.Mail.Dir)
	}
	return exitOK
}
