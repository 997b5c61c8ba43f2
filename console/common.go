package console

import (
	"strings"
	"sync"
)

// The common-password list is built here from first principles rather
// than copied: no permissively licensed breached-password corpus was
// reachable from the build machine (see SOURCE.md). It holds keyboard
// walks, repeated and sequential characters, season or month plus year,
// and words a school's staff reach for (the school, the term, football,
// "safeguarding"), each also with the digits and symbols people add.

// schoolWords are whole words that, with digits or symbols added, make
// a weak password. Kept lower case and letters only (see coreWord).
var schoolWords = strings.Fields(`
password passw0rd passwort letmein welcome admin administrator login qwerty
school schools academy primary secondary college teacher teachers staff staffroom
pupil pupils student students classroom headteacher head deputy office reception
safeguarding safeguard designated dsl governor governors trust trustee
gatehouse filter firewall internet network computer laptop ipad chromebook
library maths english science history geography music football rugby netball
cricket tennis summer winter spring autumn christmas easter halloween
january february march april may june july august september october november december
monday tuesday wednesday thursday friday saturday sunday
term termone termtwo termthree spring summer autumn
london manchester birmingham leeds liverpool england britain scotland wales
arsenal chelsea liverpool everton tottenham united city
monkey dragon sunshine princess shadow master superman batman iloveyou trustno
changeme changeit default secret temp temporary test testing guest user
abc abcdef abcdefgh alphabet qwertyuiop asdfghjkl zxcvbnm
`)

var (
	commonOnce sync.Once
	commonSet  map[string]bool
	wordSet    map[string]bool
)

// common is the set of whole common passwords (lower case).
func common() map[string]bool {
	commonOnce.Do(buildCommon)
	return commonSet
}

// commonWords is the set of words that stay weak with digits added.
func commonWords() map[string]bool {
	commonOnce.Do(buildCommon)
	return wordSet
}

func buildCommon() {
	set := map[string]bool{}
	words := map[string]bool{}
	for _, w := range schoolWords {
		words[w] = true
	}
	// Keyboard rows (UK layout) and their reverses, walked from every
	// start for 12 to the row's length.
	rows := []string{"`1234567890-=", "qwertyuiop[]", "asdfghjkl;'#", "zxcvbnm,./", "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik,9ol.0p;/",
		"qazwsxedcrfvtgbyhnujmikolp", "!@#$%^&*()_+", "!\"£$%^&*()_+", "0987654321", "abcdefghijklmnopqrstuvwxyz"}
	for _, r := range rows {
		for _, s := range []string{r, reverse(r), r + r} {
			for i := 0; i < len(s); i++ {
				for j := i + 4; j <= len(s); j++ {
					set[s[i:j]] = true
				}
			}
		}
		// Letters-only walks are words too ("qwertyuiop" + "2024!").
		if w := coreWord(r); len(w) >= 4 {
			for i := 0; i+4 <= len(w); i++ {
				for j := i + 4; j <= len(w); j++ {
					words[w[i:j]] = true
				}
			}
		}
	}
	// Repeated single characters and short repeated groups.
	for _, c := range "abcdefghijklmnopqrstuvwxyz0123456789!@#$%*.-_" {
		for n := 8; n <= 32; n++ {
			set[strings.Repeat(string(c), n)] = true
		}
	}
	for _, g := range []string{"12", "123", "1234", "ab", "abc", "abcd", "qw", "qwe", "xo", "69", "007"} {
		for n := 2; len(g)*n <= 32; n++ {
			set[strings.Repeat(g, n)] = true
		}
	}
	// A word or walk with digits, a year or symbols added ("Summer2026!",
	// "Password12345") is caught by CheckPassword's coreWord test against
	// words, so the combinations need not be listed.
	commonSet, wordSet = set, words
}

func reverse(s string) string {
	r := []rune(s)
	for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
		r[i], r[j] = r[j], r[i]
	}
	return string(r)
}
