package blocklists

import (
	"fmt"
	"os"
	"path/filepath"
)

// SquidList is one category directory of a squidGuard blacklist tree.
type SquidList struct {
	Dir     string // sub-directory name, e.g. "adult"
	Domains string // path of the domains file, "" if absent
	URLs    string // path of the urls file, "" if absent
}

// ScanSquidGuard lists the category directories under root (the directory
// holding them, e.g. ".../blacklists"; a root whose only content is a
// "blacklists" directory, as unpacked from the UT1 tarball, also works).
// For each it prefers the plain "domains" and "urls" files and falls back
// to "domains.gz" and "urls.gz". Directories with neither are skipped,
// symbolic links to directories (upstream aliases such as porn -> adult)
// are followed, and the result is sorted by Dir. It is an error if no
// directory has a list.
func ScanSquidGuard(root string) ([]SquidList, error) {
	lists, err := scanSquid(root)
	if err != nil {
		return nil, err
	}
	if len(lists) == 0 {
		if fi, err := os.Stat(filepath.Join(root, "blacklists")); err == nil && fi.IsDir() {
			if lists, err = scanSquid(filepath.Join(root, "blacklists")); err != nil {
				return nil, err
			}
		}
	}
	if len(lists) == 0 {
		return nil, fmt.Errorf("%s: no squidGuard category directories (want <category>/domains or <category>/urls, optionally .gz)", root)
	}
	return lists, nil
}

func scanSquid(root string) ([]SquidList, error) {
	entries, err := os.ReadDir(root) // sorted by name
	if err != nil {
		return nil, err
	}
	var lists []SquidList
	for _, e := range entries {
		dir := filepath.Join(root, e.Name())
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			continue
		}
		l := SquidList{Dir: e.Name(), Domains: listFile(dir, "domains"), URLs: listFile(dir, "urls")}
		if l.Domains != "" || l.URLs != "" {
			lists = append(lists, l)
		}
	}
	return lists, nil
}

// listFile returns dir/name or dir/name.gz, whichever is a regular file
// (plain first), or "".
func listFile(dir, name string) string {
	for _, n := range []string{name, name + ".gz"} {
		p := filepath.Join(dir, n)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

// UT1Categories maps the directory names of the UT1 blacklists (Université
// Toulouse Capitole) onto the catalogue; both the domains and urls files of
// a directory take its category. Directories not listed are not loaded by
// default. Left out on purpose:
//   - strict_redirector, strong_redirector: the redirector domains again, with
//     search-engine caches added; redirector covers the category.
//   - mixed_adult: sites with some adult sections, far too broad to block.
//   - sect: cults; not the same thing as extremism, so no mapping is safe.
//   - dangerous_material (bomb making), remote-control, dynamic-dns, shortener,
//     radio, tricheur (exam cheating), bitcoin, filehosting: no catalogue
//     category fits without guessing; map them in the config if wanted.
//   - whitelists and topic lists (liste_blanche, liste_bu, sexual_education,
//     child, press, bank, jobsearch, shopping, ...): not things to block.
var UT1Categories = map[string]Category{
	"adult":               Pornography,
	"agressif":            Violence, // upstream alias "violence"; its French description also names racist and hateful sites
	"drogue":              Drugs,
	"gambling":            Gambling,
	"arjel":               Gambling, // French licensed gambling operators
	"malware":             Malware,
	"phishing":            Phishing,
	"cryptojacking":       Malware,
	"stalkerware":         Malware,
	"ddos":                Malware, // DDoS-for-hire ("stresser") services
	"hacking":             Malware,
	"warez":               Piracy,
	"fakenews":            Misinformation,
	"redirector":          WebProxy, // proxies and anonymisers used to get around filters
	"residential-proxies": WebProxy,
	"vpn":                 VPN,
	"doh":                 DoH,
	"dating":              Dating,
	"games":               Games,
	"social_networks":     SocialMedia,
	"chat":                Chat,
	"audio-video":         Streaming,
	"ai":                  AI,
}
