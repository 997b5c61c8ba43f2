// Package oidcclaims reads the OpenID Connect ID token claims Gatehouse
// signs people in by, and decides whether the provider vouches for the
// token's email address. The pupils' sign-in page and the console's
// sign-in share it, so one rule decides both.
package oidcclaims

import "strings"

// Claims are the ID token's claims Gatehouse reads.
type Claims struct {
	Email             string `json:"email"`
	EmailVerified     *bool  `json:"email_verified"`
	PreferredUsername string `json:"preferred_username"`
	Name              string `json:"name"`
	HD                string `json:"hd"`
	TID               string `json:"tid"`      // Entra ID: the tenant
	IDP               string `json:"idp"`      // Entra ID: who authenticated a guest
	EDOV              *bool  `json:"xms_edov"` // Entra ID: the email's domain is the tenant's verified domain
}

// Vouched reports whether the provider vouches for the token's email:
// email_verified true (a provider that does not say has not verified it);
// with Microsoft Entra ID (tenant set: the tenant ID in its issuer), which
// sends no email_verified, a member of the tenant instead: tid the
// tenant, no guest's idp, xms_edov not false.
func (c *Claims) Vouched(issuer, tenant string) bool {
	if c.EmailVerified != nil && !*c.EmailVerified {
		return false
	}
	if tenant == "" {
		return c.EmailVerified != nil
	}
	idp := strings.ToLower(c.IDP)
	guest := idp != "" && idp != strings.ToLower(issuer) && !strings.Contains(idp, "/"+tenant+"/")
	return strings.EqualFold(c.TID, tenant) && !guest && (c.EDOV == nil || *c.EDOV)
}
