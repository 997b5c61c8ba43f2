package console

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/explain"
	"github.com/gatehouse-filter/gatehouse/internal/atomicfile"
	"github.com/gatehouse-filter/gatehouse/policy"
)

// IT's allow and deny entries per group live in the managed lists file
// (config.ManagedFile, beside the database), which every config load
// reads. A change here writes the file and applies it through the normal
// reload path (IT.Apply): the new snapshot is published whole, so
// decisions move from the old rules to the new with no gap and no
// restart. If the reload fails, the file is put back and nothing changes.

// managedRow is one entry as the page lists it.
type managedRow struct {
	Group, Kind string
	config.ManagedEntry
}

// userError is a problem with what IT asked for, shown in the form.
type userError string

func (e userError) Error() string { return string(e) }

func (s *Server) managedLists(w http.ResponseWriter, r *http.Request) {
	sess := s.itUser(w, r, false)
	if sess == nil {
		return
	}
	data := s.itData(sess)
	q := r.URL.Query()
	data["Group"], data["Entry"], data["Kind"] = q.Get("group"), q.Get("entry"), "allow"
	s.renderLists(w, http.StatusOK, data)
}

// renderLists shows the form and every managed entry.
func (s *Server) renderLists(w http.ResponseWriter, status int, data map[string]any) {
	cfg := s.o.IT.Engine().Config()
	m, err := config.ReadManaged(cfg.ManagedFile())
	if err != nil {
		data["Error"] = "The managed lists file cannot be read: " + err.Error()
		m = &config.Managed{}
	}
	var rows []managedRow
	for _, g := range slices.Sorted(maps.Keys(m.Groups)) {
		for _, e := range m.Groups[g].Allow {
			rows = append(rows, managedRow{g, "allow", e})
		}
		for _, e := range m.Groups[g].Deny {
			rows = append(rows, managedRow{g, "deny", e})
		}
	}
	data["Rows"], data["Groups"], data["File"] = rows, slices.Sorted(maps.Keys(cfg.Groups)), cfg.ManagedFile()
	s.render(w, status, "it_lists", data)
}

func (s *Server) managedAdd(w http.ResponseWriter, r *http.Request) {
	sess := s.itPost(w, r, false)
	if sess == nil {
		return
	}
	group, kind := r.PostFormValue("group"), r.PostFormValue("kind")
	entry, reason := strings.TrimSpace(r.PostFormValue("entry")), strings.TrimSpace(r.PostFormValue("reason"))
	err := s.addManaged(r, sess, group, kind, config.ManagedEntry{Entry: entry, Reason: reason})
	data := s.itData(sess)
	var ue userError
	switch {
	case errors.As(err, &ue):
		data["Error"], data["Group"], data["Kind"], data["Entry"], data["Reason"] = string(ue), group, kind, entry, reason
		s.renderLists(w, http.StatusBadRequest, data)
	case err != nil:
		s.fail(w, err)
	default:
		data["Done"], data["Kind"] = managedDone(s.o.IT.Engine().Config(), entry, group, kind), "allow"
		s.renderLists(w, http.StatusOK, data)
	}
}

// managedDone says what a managed entry now does, and no more: a deny
// entry blocks each new lookup and request at once, but a device keeps a
// DNS answer it already has for that answer's time to live, up to
// dns.cache.max_ttl, and may reach the site until then.
func managedDone(cfg *config.Config, entry, group, kind string) string {
	msg := fmt.Sprintf("%s is now on group %s's %s list. The filter uses it from now on.", entry, group, kind)
	if kind == "deny" {
		msg += fmt.Sprintf(" A device that looked the site up before now may still reach it until its answer runs out (at most %s, dns.cache.max_ttl), unless it goes through the proxy.", humanDuration(cfg.DNS.Cache.MaxTTL.D()))
	}
	return msg
}

// humanDuration is d in words ("24 hours", "30 minutes").
func humanDuration(d time.Duration) string {
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		if d == time.Hour {
			return "1 hour"
		}
		return fmt.Sprintf("%d hours", d/time.Hour)
	case d >= time.Minute && d%time.Minute == 0:
		return fmt.Sprintf("%d minutes", d/time.Minute)
	}
	return d.String()
}

// addManaged checks an entry as the config's are checked, refuses the
// restricted tier, writes it to the managed file and applies it. A
// userError says what is wrong with the entry.
func (s *Server) addManaged(r *http.Request, sess *session, group, kind string, e config.ManagedEntry) error {
	eng := s.o.IT.Engine()
	cfg := eng.Config()
	g := cfg.Groups[group]
	if g == nil {
		return userError("Choose a group.")
	}
	if kind != "allow" && kind != "deny" {
		return userError("Choose allow or deny.")
	}
	e.By, e.At = sess.account.Email, s.o.Now().UTC().Truncate(time.Second)
	if msg := config.CheckManaged(e); msg != "" {
		return userError(strings.ToUpper(msg[:1]) + msg[1:] + ".")
	}
	norm, _ := config.CheckEntry(e.Entry)
	if restrictedEntry(eng, norm) {
		// Never stored nor shown: the audit keeps the hash only.
		host, _, _ := explain.SplitTarget(norm)
		if err := s.itAudit(r, sess, "it."+kind+".refused", "group "+group, "sha256:"+bl.EntryHash(host)+": on a restricted list"); err != nil {
			return err
		}
		return userError("That site is on a restricted list (illegal content). It is always blocked for everyone and cannot be listed here.")
	}
	if kind == "allow" {
		// An allow entry lifts every block of the group but the
		// restricted tier for what it covers: a public suffix or a wide
		// range is never what was meant.
		if msg := config.TooBroadAllow(norm); msg != "" {
			return userError(strings.ToUpper(msg[:1]) + msg[1:] + ".")
		}
	}
	own := func(list []string) bool {
		return slices.ContainsFunc(list, func(x string) bool { n, _ := config.CheckEntry(x); return n == norm })
	}
	if kind == "allow" && own(g.Deny) {
		return userError(fmt.Sprintf("Group %s's own deny list in the config (groups.%s.deny) has %s, and deny comes before allow: change the config instead.", group, group, e.Entry))
	}
	if kind == "allow" {
		if d, denied := deniedEntry(eng, group, norm); denied {
			return userError(fmt.Sprintf("Group %s's deny (%s, entry %s) blocks %s, and deny comes before allow, so an allow entry would change nothing: remove that deny first (on this page, or in the config).", group, d.List, d.Entry, e.Entry))
		}
	}
	if own(g.Allow) || own(g.Deny) {
		return userError(fmt.Sprintf("Group %s's own lists in the config already have %s.", group, e.Entry))
	}
	return s.changeManaged(func(m *config.Managed) error {
		mg := m.Groups[group]
		if mg == nil {
			mg = &config.ManagedGroup{}
			m.Groups[group] = mg
		}
		for _, k := range []string{"allow", "deny"} {
			list := mg.Allow
			if k == "deny" {
				list = mg.Deny
			}
			for _, x := range list {
				if n, _ := config.CheckEntry(x.Entry); n == norm {
					return userError(fmt.Sprintf("%s is already on group %s's managed %s list (added by %s: %s).", e.Entry, group, k, x.By, x.Reason))
				}
			}
		}
		list := &mg.Allow
		if kind == "deny" {
			list = &mg.Deny
		}
		if len(*list) >= config.MaxManagedEntries {
			return userError(fmt.Sprintf("Group %s's managed %s list has %d entries, the most it can hold; remove some first.", group, kind, config.MaxManagedEntries))
		}
		*list = append(*list, e)
		return nil
	}, func() error {
		after := fmt.Sprintf("before: not listed; after: on the %s list, reason %q", kind, e.Reason)
		if e.Report != 0 {
			after += fmt.Sprintf(", approving mistake report %d", e.Report)
		}
		return s.itAudit(r, sess, "it."+kind+".add", "group "+group+": "+e.Entry, after)
	})
}

// entryRequest is a request for what an entry (canonical) names, as the
// front doors would ask for it; ok is false when it names nothing.
func entryRequest(norm string) (req policy.Request, ok bool) {
	host, path, err := explain.SplitTarget(norm)
	if err != nil {
		return req, false
	}
	req = policy.Request{Client: netip.IPv4Unspecified(), Host: host, Path: path}
	if p, err := netip.ParsePrefix(norm); err == nil {
		req.Host, req.Path, req.Addr = "", "", p.Addr()
	} else if a, err := netip.ParseAddr(host); err == nil {
		req.Addr = a
	}
	return req, true
}

// restrictedEntry reports whether an entry (canonical) names a site on the
// restricted tier.
func restrictedEntry(eng *policy.Engine, norm string) bool {
	req, ok := entryRequest(norm)
	return ok && eng.Decide(req).Reason == policy.ReasonRestricted
}

// deniedEntry returns the group's decision for what an entry (canonical)
// names when the group's deny blocks it (its deny entries, the config's
// and the managed ones, and its deny_lists): deny comes before allow, so
// an allow entry there would change nothing.
func deniedEntry(eng *policy.Engine, group, norm string) (policy.Decision, bool) {
	req, ok := entryRequest(norm)
	if !ok {
		return policy.Decision{}, false
	}
	req.DeviceGroup = group // decided as for a member of the group, wherever they are
	d := eng.Decide(req)
	return d, d.Reason == policy.ReasonGroupDeny
}

// changeManaged edits the managed file under the lock and applies it. If
// the reload fails, the old file is put back. Every change is audited, so
// one the audit log does not take is undone too (put back and applied
// again): a change stays in force only once it is recorded. A file that
// cannot be put back is said, never swallowed.
func (s *Server) changeManaged(edit func(*config.Managed) error, audit func() error) error {
	s.it.mu.Lock()
	defer s.it.mu.Unlock()
	path := s.o.IT.Engine().Config().ManagedFile()
	old, err := os.ReadFile(path)
	existed := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	m, err := config.ReadManaged(path)
	if err != nil {
		return userError("The managed lists file cannot be read, so nothing was changed: " + err.Error())
	}
	if err := edit(m); err != nil {
		return err
	}
	if err := config.WriteManaged(path, m); err != nil {
		return err
	}
	putBack := func() error {
		if existed {
			return atomicfile.Write(path, old, 0o600)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	if err := s.o.IT.Apply(); err != nil {
		if rerr := putBack(); rerr != nil {
			s.o.Log.Error("console: putting the managed lists back", "file", path, "err", rerr)
			return userError(fmt.Sprintf("The change was not applied: the config could not be reloaded: %v. The managed lists file %s could not be put back as it was either (%v), so the next reload would apply the change: put it right there.", err, path, rerr))
		}
		return userError("The change was not applied, so nothing changed: the config could not be reloaded: " + err.Error())
	}
	if err := audit(); err != nil {
		rerr := putBack()
		if rerr == nil {
			rerr = s.o.IT.Apply()
		}
		if rerr != nil {
			s.o.Log.Error("console: a managed lists change the audit log refused is still in force", "file", path, "audit", err, "err", rerr)
			return userError(fmt.Sprintf("The change is in force but could not be recorded in the audit log (%v), and undoing it failed (%v): check %s and the database.", err, rerr, path))
		}
		s.o.Log.Error("console: a managed lists change the audit log refused was undone", "file", path, "audit", err)
		return userError("The change could not be recorded in the audit log, so it was undone and nothing changed: " + err.Error())
	}
	return nil
}

func (s *Server) managedRemove(w http.ResponseWriter, r *http.Request) {
	sess := s.itPost(w, r, false)
	if sess == nil {
		return
	}
	group, kind, entry, reason := r.PostFormValue("group"), r.PostFormValue("kind"), r.PostFormValue("entry"), strings.TrimSpace(r.PostFormValue("reason"))
	data := s.itData(sess)
	var removed config.ManagedEntry
	err := func() error {
		if reason == "" {
			return userError(fmt.Sprintf("Say why %s is being removed.", entry))
		}
		if len(reason) > 500 {
			return userError("The reason is longer than 500 characters.")
		}
		return s.changeManaged(func(m *config.Managed) error {
			mg := m.Groups[group]
			var list *[]config.ManagedEntry
			switch {
			case mg == nil:
			case kind == "allow":
				list = &mg.Allow
			case kind == "deny":
				list = &mg.Deny
			}
			if list != nil {
				if i := slices.IndexFunc(*list, func(e config.ManagedEntry) bool { return e.Entry == entry }); i >= 0 {
					removed = (*list)[i]
					*list = slices.Delete(*list, i, i+1)
					return nil
				}
			}
			return userError(fmt.Sprintf("%s is not on group %s's managed %s list (perhaps someone removed it already).", entry, group, kind))
		}, func() error {
			return s.itAudit(r, sess, "it."+kind+".remove", "group "+group+": "+entry,
				fmt.Sprintf("before: on the %s list, reason %q (added by %s at %s); after: removed, reason %q", kind, removed.Reason, removed.By,
					removed.At.Format(time.RFC3339), reason))
		})
	}()
	var ue userError
	switch {
	case errors.As(err, &ue):
		data["Error"], data["Kind"] = string(ue), "allow"
		s.renderLists(w, http.StatusBadRequest, data)
	case err != nil:
		s.fail(w, err)
	default:
		data["Done"], data["Kind"] = fmt.Sprintf("%s is no longer on group %s's %s list.", entry, group, kind), "allow"
		s.renderLists(w, http.StatusOK, data)
	}
}

// managedHas reports whether a group's managed list has entry already.
func (s *Server) managedHas(group, kind, entry string) bool {
	norm, msg := config.CheckEntry(entry)
	if msg != "" {
		return false
	}
	m, err := config.ReadManaged(s.o.IT.Engine().Config().ManagedFile())
	if err != nil || m.Groups[group] == nil {
		return false
	}
	list := m.Groups[group].Allow
	if kind == "deny" {
		list = m.Groups[group].Deny
	}
	return slices.ContainsFunc(list, func(e config.ManagedEntry) bool { n, _ := config.CheckEntry(e.Entry); return n == norm })
}
