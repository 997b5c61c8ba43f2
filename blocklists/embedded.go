package blocklists

import (
	"bytes"
	"embed"
	"fmt"
)

//go:embed embedded/*.txt
var embeddedFS embed.FS

// EmbeddedList is a list Gatehouse ships, written by its authors.
type EmbeddedList struct {
	File     string
	Category Category
	Format   Format // FormatDomains unless set
}

// Embedded lists the built-in lists: the DNS canaries and bypass endpoints
// Gatehouse must always know, so filtering is useful with no network.
var Embedded = []EmbeddedList{
	{"dns-canary.txt", Canary, ""},
	{"private-relay.txt", PrivateRelay, ""},
	{"doh.txt", DoH, ""},
	{"doh-ips.txt", DoH, FormatIPs},
	{"vpn.txt", VPN, ""},
	{"web-proxy.txt", WebProxy, ""},
	{"tor.txt", Tor, ""},
}

// addEmbedded loads the built-in lists into b.
func addEmbedded(b *Builder) error {
	for _, e := range Embedded {
		data, err := embeddedFS.ReadFile("embedded/" + e.File)
		if err != nil {
			return err
		}
		info, sink, err := b.AddList(ListInfo{
			Name: "embedded/" + e.File[:len(e.File)-len(".txt")], Source: "embedded", Category: e.Category,
		})
		if err != nil {
			return err
		}
		format := e.Format
		if format == "" {
			format = FormatDomains
		}
		res, err := Parse(bytes.NewReader(data), "embedded/"+e.File, format, sink)
		if err != nil || res.Invalid > 0 {
			return fmt.Errorf("built-in list %s is broken: %v %v", e.File, err, res.Errors)
		}
		info.Format, info.Entries = res.Format, res.Entries
	}
	return addSafeSearch(b)
}
