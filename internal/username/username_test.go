package username

import "testing"

func TestCanon(t *testing.T) {
	for in, want := range map[string]string{
		"amira.khan": "amira.khan", "Amira.Khan": "amira.khan", "AMIRA@PUPILS.EXAMPLE": "amira@pupils.example",
		"ZOË.SMITH": "zoë.smith", "": "", "amira.khan ": "amira.khan", " amira.khan": "amira.khan",
		"ａｍｉｒａ.khan": "amira.khan", "Amira.Khan\u00a0": "amira.khan", "amira  khan": "amira khan",
		"amira\tkhan": "amira khan", "Zoe\u0308.smith": "zoë.smith", "   ": "",
		// Full case folding, as LDAP prepares names (RFC 4518 §2.2, RFC 3454
		// table B.2) and Windows compares them: one account, one name.
		"Straße": "strasse", "STRASSE": "strasse", "STRAẞE": "strasse", "ΟΔΥΣΣΕΥΣ": "οδυσσευσ", "οδυσσευς": "οδυσσευσ",
		"ﬀion.jones": "ffion.jones", "\u212Aai": "kai", "\u13a0": "\u13a0", "\uab70": "\u13a0",
	} {
		if got := Canon(in); got != want {
			t.Errorf("Canon(%q) = %q, want %q", in, got, want)
		}
		if got := Canon(want); got != want {
			t.Errorf("Canon(%q) = %q: not stable", want, got)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = Canon("amira.khan") }); n != 0 {
		t.Errorf("Canon of a name in its form allocates %v times", n)
	}
}

// FuzzCanon: Canon is stable (a name in its form is its own form), so
// names compared after being recorded in it still compare equal.
func FuzzCanon(f *testing.F) {
	for _, s := range []string{"Straße", "οδυσσευς", "\u13a0\uab70", "ᾳ", "İstanbul", "ǰ", "ﬀ ", "a\u0345\u0301"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := Canon(s)
		if Canon(c) != c {
			t.Errorf("Canon(%q) = %q, Canon of that %q", s, c, Canon(c))
		}
	})
}

func TestStripRealm(t *testing.T) {
	realms := []string{"SCHOOL", "school.local"}
	for in, want := range map[string]string{
		`SCHOOL\jsmith`: "jsmith", `school\J.Smith`: "J.Smith", "jsmith@school.local": "jsmith", "jsmith@SCHOOL.LOCAL": "jsmith",
		"jsmith@school": "jsmith", "jsmith@other.ac.uk": "jsmith@other.ac.uk", `OTHER\jsmith`: `OTHER\jsmith`,
		`SCHOOL\`: `SCHOOL\`, "@school.local": "@school.local", "jsmith": "jsmith", "a@b@school.local": "a@b",
	} {
		if got := StripRealm(in, realms); got != want {
			t.Errorf("StripRealm(%q) = %q, want %q", in, got, want)
		}
	}
	if got := StripRealm(`SCHOOL\jsmith`, nil); got != `SCHOOL\jsmith` {
		t.Errorf("no realms: %q", got)
	}
}
