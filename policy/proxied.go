package policy

import "strings"

// translateSuffix is the domain under which Google Translate's website
// proxy serves any site: www-example-com.translate.goog is
// www.example.com, fetched by Google and shown translated (the host's
// "-" written "--", its "." written "-").
const translateSuffix = ".translate.goog"

// ProxiedHost is the site a name stands for when it is a web proxy's
// address for that site, as Google Translate's www-example-com.translate.goog
// is www.example.com; ok is false for any other name. A pupil need not
// want a translation: the proxy serves the site whole, so the decision
// of the name is also the decision of the site (decide). It allocates
// only for such a name.
func ProxiedHost(host string) (site string, ok bool) {
	label, found := strings.CutSuffix(host, translateSuffix)
	if !found || label == "" || strings.IndexByte(label, '.') >= 0 {
		return "", false
	}
	var b strings.Builder
	b.Grow(len(label))
	for i := 0; i < len(label); i++ {
		c := label[i]
		if c != '-' {
			b.WriteByte(c)
			continue
		}
		if i+1 < len(label) && label[i+1] == '-' {
			b.WriteByte('-')
			i++
		} else {
			b.WriteByte('.')
		}
	}
	site = b.String()
	if strings.IndexByte(site, '.') < 0 || site[0] == '.' || site[len(site)-1] == '.' || strings.Contains(site, "..") {
		return "", false
	}
	return site, true
}
