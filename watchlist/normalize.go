package watchlist

import (
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Normalisation makes the different ways a pupil can spell a phrase one
// string. Phrases and the text scored against them go through the same
// function, so both sides always agree:
//
//   - letters are lower-cased; Latin accents and ligatures are folded
//     (é → e, ß → ss, æ → ae, ł → l) and combining marks dropped, so text
//     in NFD form folds the same as NFC; fullwidth forms (ｋｉｌｌ) are
//     their ASCII letters, digits and symbols, and the other compatibility
//     forms of Latin letters and digits (the "fancy text" of font
//     generators: mathematical bold 𝐤𝐢𝐥𝐥, circled ⓚ, squared 🄺,
//     superscript ᵏ, ligatures ﬁ) the letters and digits NFKC makes them;
//   - leetspeak digits and symbols become the letters they stand for:
//     0→o 1→i 3→e 4→a 5→s 7→t @→a $→s (other digits stay);
//   - characters drawn as nothing (format characters: a soft hyphen,
//     zero-width spaces and joiners, direction marks) are dropped, so a
//     word they sit in stays whole ("sui\u00adcide" → "suicide");
//   - apostrophes are dropped ("don't" → "dont"); any other punctuation,
//     symbol or space is a word break, and breaks collapse to one space,
//     with none at either end;
//   - a run of the same letter is one letter ("kiiiill" → "kil"), and a
//     phrase is folded the same way ("kill" → "kil"), so stretched words
//     match.
//
// Letters of other scripts are kept (lower-cased), so lists in other
// languages work the same way. The result is idempotent.

// asciiMap maps each ASCII byte to its normalised byte; 0 drops it and ' '
// is a word break.
var asciiMap = func() (m [128]byte) {
	for c := 0; c < 128; c++ {
		m[c] = ' '
	}
	for c := 'a'; c <= 'z'; c++ {
		m[c] = byte(c)
		m[c-'a'+'A'] = byte(c)
	}
	for c := '0'; c <= '9'; c++ {
		m[c] = byte(c)
	}
	for from, to := range map[byte]byte{'0': 'o', '1': 'i', '3': 'e', '4': 'a', '5': 's', '7': 't', '@': 'a', '$': 's'} {
		m[from] = to
	}
	m['\''] = 0
	m['`'] = 0
	return m
}()

// latinFold folds Latin-1 Supplement and Latin Extended-A letters (U+00C0
// to U+017F) to ASCII; "" means not folded.
var latinFold = func() (t [0x180]string) {
	for _, g := range []struct{ from, to string }{
		{"ÀÁÂÃÄÅàáâãäåĀāĂăĄąª", "a"}, {"ÇçĆćĈĉĊċČč", "c"}, {"ĎďĐđÐð", "d"},
		{"ÈÉÊËèéêëĒēĔĕĖėĘęĚě", "e"}, {"ĜĝĞğĠġĢģ", "g"}, {"ĤĥĦħ", "h"},
		{"ÌÍÎÏìíîïĨĩĪīĬĭĮįİı", "i"}, {"Ĵĵ", "j"}, {"Ķķĸ", "k"}, {"ĹĺĻļĽľĿŀŁł", "l"},
		{"ÑñŃńŅņŇňŉŊŋ", "n"}, {"ÒÓÔÕÖØòóôõöøŌōŎŏŐőº", "o"}, {"ŔŕŖŗŘř", "r"},
		{"ŚśŜŝŞşŠšſ", "s"}, {"ŢţŤťŦŧ", "t"}, {"ÙÚÛÜùúûüŨũŪūŬŭŮůŰűŲų", "u"},
		{"Ŵŵ", "w"}, {"ÝýÿŶŷŸ", "y"}, {"ŹźŻżŽž", "z"},
		{"Ææ", "ae"}, {"Œœ", "oe"}, {"ß", "ss"}, {"Þþ", "th"}, {"Ĳĳ", "ij"},
	} {
		for _, r := range g.from {
			t[r] = g.to
		}
	}
	return t
}()

// compatBlocks are the blocks that hold compatibility forms of Latin
// letters and digits (compatFold): Latin-1 and the Latin extensions
// (superscripts ¹²³, ǅ), phonetic modifiers (ᵏ), super- and subscripts,
// letterlike symbols and number forms (ℓ, Ⅻ), enclosed alphanumerics
// (ⓚ, ⒦), squared Latin abbreviations (㎏), ligatures (ﬁ), mathematical
// alphanumerics (𝐤, 𝕜) and the enclosed alphanumeric supplement (🄺).
// Fullwidth forms are folded apart (fold).
var compatBlocks = [...][2]rune{
	{0x00A0, 0x02FF}, {0x1D00, 0x1DBF}, {0x2070, 0x209F}, {0x2100, 0x218F},
	{0x2460, 0x24FF}, {0x3200, 0x33FF}, {0xA770, 0xA7FF}, {0xFB00, 0xFB06},
	{0x1D400, 0x1D7FF}, {0x1F100, 0x1F1FF}, {0x1FBF0, 0x1FBF9},
}

// compatFold maps a compatibility form of Latin letters or digits to
// them: the letters and digits of its NFKC form (the form search engines
// read a query in), when that is made only of ASCII and Latin letters
// (latinFold), digits and ASCII punctuation, so "𝐤" is "k", "⒦" ("(k)")
// is "k" and "™" is "tm"; a form of other scripts, or one whose NFKC
// holds anything else ("½" is "1⁄2"), is left to the other rules.
var compatFold = func() map[rune]string {
	m := map[rune]string{}
	for _, b := range compatBlocks {
		for r := b[0]; r <= b[1]; r++ {
			if r < rune(len(latinFold)) && latinFold[r] != "" {
				continue
			}
			k := norm.NFKC.String(string(r))
			if k == string(r) {
				continue
			}
			var out []rune
			ok := true
			for _, c := range k {
				switch {
				case c < utf8.RuneSelf && ('a' <= c|0x20 && c|0x20 <= 'z' || '0' <= c && c <= '9'):
					out = append(out, c)
				case c < utf8.RuneSelf && c > ' ' && c != 0x7F:
					// ASCII punctuation: "(k)", "a.m."
				case c < rune(len(latinFold)) && latinFold[unicode.ToLower(c)] != "":
					out = append(out, c)
				default:
					ok = false
				}
			}
			if ok && len(out) > 0 {
				m[r] = string(out)
			}
		}
	}
	return m
}()

// inCompatBlock reports whether r is in one of compatBlocks, so that most
// runes (of other scripts) cost a few comparisons, not a map lookup.
func inCompatBlock(r rune) bool {
	if r < compatBlocks[0][0] || r > compatBlocks[len(compatBlocks)-1][1] {
		return false
	}
	for _, b := range compatBlocks {
		if r < b[0] {
			return false
		}
		if r <= b[1] {
			return true
		}
	}
	return false
}

// Normalize returns s in normalised form (see the package notes).
func Normalize(s string) string {
	return string(AppendNormalized(nil, s))
}

// AppendNormalized appends the normalised form of s to dst. It allocates
// only when dst is too small.
func AppendNormalized(dst []byte, s string) []byte {
	n := normalizer{dst: dst, last: ' '} // no leading space; runs collapse
	start := len(dst)
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			i++
			if m := asciiMap[c]; m != 0 {
				n.emit(rune(m))
			}
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		n.fold(r)
	}
	if len(n.dst) > start && n.dst[len(n.dst)-1] == ' ' {
		n.dst = n.dst[:len(n.dst)-1]
	}
	return n.dst
}

type normalizer struct {
	dst  []byte
	last rune
}

func (n *normalizer) emit(r rune) {
	if r == n.last {
		return
	}
	n.last = r
	if r < utf8.RuneSelf {
		n.dst = append(n.dst, byte(r))
	} else {
		n.dst = utf8.AppendRune(n.dst, r)
	}
}

// fold emits the normalised form of a non-ASCII rune.
func (n *normalizer) fold(r rune) {
	switch {
	case r == utf8.RuneError:
		n.emit(' ')
		return
	case r == '’' || r == 'ʼ' || r == '‘':
		return // apostrophes
	case unicode.Is(unicode.Mn, r):
		return // combining marks (accents in NFD form)
	case unicode.Is(unicode.Cf, r):
		// Format characters, drawn as nothing (a soft hyphen, zero-width
		// spaces and joiners, a word joiner, a byte-order mark, direction
		// marks): "sui\u00adcide" is seen as "suicide", so it is one word.
		return
	}
	if r >= 0xFF01 && r <= 0xFF5E {
		r -= 0xFEE0 // fullwidth ASCII (ｋｉｌｌ): search engines fold it (NFKC)
	}
	r = unicode.ToLower(r)
	if r < utf8.RuneSelf {
		if m := asciiMap[r]; m != 0 {
			n.emit(rune(m))
		}
		return
	}
	if r < rune(len(latinFold)) {
		if f := latinFold[r]; f != "" {
			for i := 0; i < len(f); i++ {
				n.emit(rune(f[i]))
			}
			return
		}
	}
	if inCompatBlock(r) {
		if f, ok := compatFold[r]; ok {
			for _, c := range f {
				n.fold(c) // ASCII or a latinFold letter: no further compatFold
			}
			return
		}
	}
	if unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r) {
		n.emit(r)
		return
	}
	n.emit(' ')
}
