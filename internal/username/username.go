// Package username puts the user names Gatehouse's sources give (a proxy
// login, a RADIUS User-Name, the sign-in page, clients.users, the people
// file) into the one form they are compared and recorded in, so that one
// person is one user whatever the spelling a source used.
package username

import "strings"

// Canon is user in the form names are compared and recorded in: lower
// case. It returns user itself (no allocation) when it is already in that
// form, as nearly every name is.
func Canon(user string) string {
	for i := 0; i < len(user); i++ {
		if c := user[i]; c >= 0x80 || ('A' <= c && c <= 'Z') {
			return strings.ToLower(user)
		}
	}
	return user
}
