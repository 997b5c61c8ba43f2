// Package username puts the user names Gatehouse's sources give (a proxy
// login, a RADIUS User-Name, the sign-in page, clients.users, the people
// file) into the one form they are compared and recorded in, so that one
// person is one user whatever the spelling a source used.
package username

import (
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// Canon is user in the form names are compared and recorded in: Unicode
// compatibility-normalised (NFKC: full-width "ａｍｉｒａ" is "amira"), white
// space trimmed and each run of it one space, in lower case. A directory
// prepares names much so before comparing them (LDAP, RFC 4518: width
// folded, case ignored, insignificant spaces dropped), so every spelling
// it takes for one account is one name here. It returns user itself (no
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
	return strings.ToLower(s)
}
