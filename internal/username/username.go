// Package username puts the user names Gatehouse's sources give (a proxy
// login, a RADIUS User-Name, the sign-in page, clients.users, the people
// file) into the one form they are compared and recorded in, so that one
// person is one user whatever the spelling a source used.
package username

import (
	"strings"
	"unicode"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// Canon is user in the form names are compared and recorded in: Unicode
// compatibility-normalised (NFKC: full-width "ａｍｉｒａ" is "amira"), white
// space trimmed and each run of it one space, case-folded (full Unicode
// case folding: lower case, and "Straße" is "strasse", a final "ς" is
// "σ"). A directory prepares names much so before comparing them (LDAP,
// RFC 4518: width folded, case folded by RFC 3454 table B.2, which maps
// "ß" to "ss", insignificant spaces dropped; Active Directory's
// comparison takes "straße" for "strasse" too), so every spelling it
// takes for one account is one name here. It returns user itself (no
// allocation) when it is already in that form, as nearly every name is.
func Canon(user string) string {
	for i := 0; i < len(user); i++ {
		c := user[i]
		switch {
		case c >= 0x80, 'A' <= c && c <= 'Z', c < ' ', c == 0x7f:
			return canon(user)
		case c == ' ' && (i == 0 || i == len(user)-1 || user[i-1] == ' '):
			return canon(user)
		}
	}
	return user
}

func canon(user string) string {
	s := norm.NFKC.String(user)
	s = strings.Join(strings.FieldsFunc(s, unicode.IsSpace), " ")
	s = cases.Fold().String(s)
	if strings.ContainsFunc(s, cherokee) {
		// Unicode folds Cherokee to its capitals (CaseFolding.txt:
		// U+AB70 to U+13A0); x/text's Fold swaps small and capital
		// instead, so that folding twice undid it.
		s = strings.Map(func(r rune) rune {
			if cherokee(r) {
				return unicode.ToUpper(r)
			}
			return r
		}, s)
	}
	// Folding can leave a string NFKC would write otherwise (Unicode's
	// NFKC_Casefold normalises again); the result is stable:
	// Canon(Canon(x)) == Canon(x) (FuzzCanon).
	return norm.NFKC.String(s)
}

// cherokee reports whether r is a Cherokee letter with a case.
func cherokee(r rune) bool {
	return (r >= 0x13a0 && r <= 0x13fd) || (r >= 0xab70 && r <= 0xabbf)
}

// StripRealm is name without its realm when the realm is one of the
// school's own (realms, compared without case): "SCHOOL\jsmith" and
// "jsmith@school.local" are "jsmith" with realms [SCHOOL school.local],
// as Microsoft NPS, a Wi-Fi controller or a Windows login prompt may
// write the account the directory and clients.users call "jsmith". A
// name in a realm not listed (an eduroam visitor's "jsmith@other.ac.uk",
// another domain of a trust's forest) is returned whole, so it is never
// taken for the school's own jsmith; so is a name with nothing but a
// realm. It allocates nothing.
func StripRealm(name string, realms []string) string {
	if len(realms) == 0 {
		return name
	}
	if realm, user, ok := strings.Cut(name, `\`); ok && user != "" && own(realm, realms) {
		return user
	}
	if i := strings.LastIndexByte(name, '@'); i > 0 && own(name[i+1:], realms) {
		return name[:i]
	}
	return name
}

func own(realm string, realms []string) bool {
	realm = strings.TrimSpace(realm)
	for _, r := range realms {
		if realm != "" && strings.EqualFold(realm, r) {
			return true
		}
	}
	return false
}
