package console

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/explain"
)

// restrictedTitle is how a restricted-tier category is shown: "a site on
// the IWF list", never the site.
func restrictedTitle(cat string) string {
	if c, err := bl.ParseCategory(cat); err == nil && c.Restricted() {
		return c.Info().Title
	}
	return "a site on a restricted list"
}

// whyForm shows the question's form.
func (s *Server) whyForm(w http.ResponseWriter, r *http.Request) {
	sess := s.itUser(w, r, true)
	if sess == nil {
		return
	}
	s.render(w, http.StatusOK, "it_why", s.itData(sess))
}

// why answers "why was this blocked" for a client address or a user and a
// name or URL: explain.Run, the code behind `gatehouse check`, on the
// snapshot the front doors use now. Each question is audited. The form is
// posted, so the site asked about stays out of URLs and the browser's
// history (it may be on the restricted tier).
func (s *Server) why(w http.ResponseWriter, r *http.Request) {
	sess := s.itPost(w, r, true)
	if sess == nil {
		return
	}
	data := s.itData(sess)
	client, user, target := strings.TrimSpace(r.PostFormValue("client")), strings.TrimSpace(r.PostFormValue("user")), strings.TrimSpace(r.PostFormValue("target"))
	data["Client"], data["User"], data["Target"] = client, user, target
	bad := func(msg string) {
		data["Error"] = msg
		s.render(w, http.StatusBadRequest, "it_why", data)
	}
	if len(client)+len(user)+len(target) > 2048 {
		bad("That is too long.")
		return
	}
	if target == "" {
		bad("Enter the site's name or address (URL).")
		return
	}
	eng := s.o.IT.Engine()
	cfg := eng.Config()
	var addr netip.Addr
	switch {
	case client != "":
		a, err := netip.ParseAddr(client)
		if err != nil {
			bad(fmt.Sprintf("%q is not an IP address (for example 10.1.2.3).", client))
			return
		}
		addr = a
	case user != "":
		// A user decides by their own group, wherever they are: any
		// address the filter serves will do.
		if !userHasGroup(cfg.Clients.Users, user) || len(cfg.Clients.Allow) == 0 {
			bad(fmt.Sprintf("User %q has no group of their own in the config, so the answer depends on the device: give its address too.", user))
			return
		}
		addr = cfg.Clients.Allow[0].Addr()
	default:
		bad("Enter the client's address, or a user.")
		return
	}
	res, err := explain.Run(cfg, eng, explain.Input{Target: target, Client: addr, User: user, At: s.o.Now()})
	if err != nil {
		bad(fmt.Sprintf("%q is not a site name or address: %v", target, err))
		return
	}
	// The restricted tier is never shown or recorded: only "a site on
	// the IWF list", and the audit keeps the hash.
	what, lines := target, res.Lines
	if res.Restricted {
		what = "sha256:" + bl.EntryHash(res.Host)
		lines = []explain.Line{{Label: "client", Text: res.Client}, {Label: "group", Text: res.Group},
			{Label: "action", Text: strings.ToUpper(res.Action)},
			{Label: "why", Text: restrictedTitle(res.Category) + ": always blocked for everyone; it cannot be allowed"}}
		data["Target"] = ""
	}
	who := "client " + client
	if client == "" {
		who = "user " + user
	} else if user != "" {
		who += " user " + user
	}
	if err := s.itAudit(r, sess, "it.why", what, fmt.Sprintf("%s: %s (%s)", who, res.Action, res.Reason)); err != nil {
		s.fail(w, err)
		return
	}
	data["Lines"], data["Result"] = lines, res
	s.render(w, http.StatusOK, "it_why", data)
}

func userHasGroup(users []config.User, name string) bool {
	for _, u := range users {
		if u.Name == name && u.Group != "" {
			return true
		}
	}
	return false
}
