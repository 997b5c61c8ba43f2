package watchlist

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
)

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{
		"Kill MYSELF":           "kil myself",
		"  kiiiill   myself!! ": "kil myself",
		"k1ll mys3lf":           "kil myself",
		"$u1c1d3":               "suicide",
		"5u!c!de":               "su c de",
		"ÉCOLE Naïve façade":    "ecole naive facade",
		"Straße":                "strase",
		"e\u0301cole":           "ecole", // NFD
		"don't":                 "dont",
		"don’t":                 "dont",
		"self-harm":             "self harm",
		"p0rn":                  "porn",
		"@nime":                 "anime",
		"top 2 9":               "top 2 9",
		"Пример ТЕКСТ":          "пример текст",
		"bad\xffbyte":           "bad byte",
		"":                      "",
		"!!!":                   "",
	} {
		if got := Normalize(in); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"Kill MYSELF", "ÉCOLE", "e\u0301", "ß", "\xff\xfe", "k1ll  $$", "ǅ", "İ", "Å", "a\u0345a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := Normalize(s)
		if again := Normalize(n); again != n {
			t.Fatalf("not idempotent: %q → %q → %q", s, n, again)
		}
		if strings.HasPrefix(n, " ") || strings.HasSuffix(n, " ") || strings.Contains(n, "  ") {
			t.Fatalf("%q → %q: stray spaces", s, n)
		}
	})
}

func mustParse(t testing.TB, theme Theme, text string) []Entry {
	t.Helper()
	es, err := Parse(strings.NewReader(text), "test.txt", theme)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func TestParseErrors(t *testing.T) {
	_, err := Parse(strings.NewReader("# ok\nfine | 10\nno weight here\nbad | ten\nzero | 0\n!!! | 5\nsu*icide | 5\n | 4\nbig | 101\n"), "extra/self-harm.txt", SelfHarm)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`extra/self-harm.txt:3: want "phrase | weight"`,
		`extra/self-harm.txt:4: weight "ten"`,
		`extra/self-harm.txt:5: weight "0"`,
		`extra/self-harm.txt:6: "!!!": has no letters`,
		`extra/self-harm.txt:7: "su*icide": * is allowed only at the end`,
		`extra/self-harm.txt:8: no phrase`,
		`extra/self-harm.txt:9: weight "101"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestScore(t *testing.T) {
	var es []Entry
	es = append(es, mustParse(t, SelfHarm, "kill myself, kms | 10\nsuicid*, suiside | 10\nhow to | 3\noverdose | 7\nsuicide squad | -10\n")...)
	es = append(es, mustParse(t, Violence, "how to kill | 5\nhow to kill someone | 10\nbomb | 3\n")...)
	es = append(es, mustParse(t, Drugs, "how to | 3\n")...)
	w, err := Compile(es, DefaultSettings())
	if err != nil {
		t.Fatal(err)
	}
	s := w.NewScorer()
	cases := []struct {
		text  string
		best  Theme
		over  bool
		score int
		n     int // matches
	}{
		{"how to kill myself", SelfHarm, true, 13, 4},      // how to (self-harm and drugs), how to kill, kill myself
		{"HOW TO K1LL MYS3LF", SelfHarm, true, 13, 4},      // leetspeak
		{"how to kiiiill myself??", SelfHarm, true, 13, 4}, // stretched
		{"suicidal thoughts", SelfHarm, true, 10, 1},       // prefix
		{"suiside", SelfHarm, true, 10, 1},                 // misspelling variant
		{"suicide squad cast", SelfHarm, false, 0, 2},      // innocent context cancels
		{"skill myselfie", SelfHarm, false, 0, 0},          // word boundaries
		{"how to kill someone", Violence, true, 15, 4},
		{"overdose", SelfHarm, false, 7, 1},
		{"how to overdose", SelfHarm, true, 10, 3},
		{"how to bake bread", SelfHarm, false, 3, 2},
		{"kms kms kill myself", SelfHarm, true, 10, 1}, // an entry counts once
	}
	for _, c := range cases {
		r := s.Score(c.text)
		if c.n == 0 {
			if len(r.Matches) != 0 {
				t.Errorf("%q: matched %v", c.text, r.Matches)
			}
			continue
		}
		if r.Best != c.best || r.Over != c.over || r.Score() != c.score {
			t.Errorf("%q: best %s over %v score %d (%v), want %s %v %d", c.text, r.Best, r.Over, r.Score(), r.Scores, c.best, c.over, c.score)
		}
		if len(r.Matches) != c.n {
			t.Errorf("%q: %d matches %v, want %d", c.text, len(r.Matches), r.Matches, c.n)
		}
	}
	// Severity decides between two themes over their thresholds.
	r := s.Score("kill myself how to kill someone")
	if r.Best != SelfHarm || !r.Over || r.Scores[Violence] < 10 {
		t.Errorf("best %s, scores %v: want self-harm (critical) over violence (high)", r.Best, r.Scores)
	}
	if w.Settings(SelfHarm).Severity != bl.SeverityCritical {
		t.Error("self-harm is not critical by default")
	}
}

func TestStarterLists(t *testing.T) {
	w, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	if w.Len() < 50 {
		t.Fatalf("starter lists have %d entries", w.Len())
	}
	s := w.NewScorer()
	for text, want := range map[string]Theme{
		"how to kill myself":         SelfHarm,
		"i w4nt to d1e":              SelfHarm,
		"i just want to kms":         SelfHarm,
		"sucide methods":             SelfHarm,
		"how to join isis":           Extremism,
		"im being bullied at school": Bullying,
		"free p0rn":                  Sexual,
		"how to make a pipe bomb":    Violence,
		"where to buy weed":          Drugs,
	} {
		r := s.Score(text)
		if !r.Over || r.Best != want {
			t.Errorf("%q: best %s over %v scores %v, want %s over", text, r.Best, r.Over, r.Scores, want)
		}
	}
	for _, text := range []string{"suicide squad film", "how to bake a cake", "weather in london", "photosynthesis for kids", "sex education lesson",
		"5 kms to miles", "where to buy weed killer", "naked mole rat facts", "anne boleyn beheading", "al gore climate", "essex and sussex map",
		"how to kill a process in linux", "the history of mein kampf"} {
		if r := s.Score(text); r.Over {
			t.Errorf("%q: reported as %s (%v)", text, r.Best, r.Matches)
		}
	}
}

func TestScoreAllocs(t *testing.T) {
	w, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	s := w.NewScorer()
	s.Score("how to kill myself painlessly and quickly") // warm up
	if n := testing.AllocsPerRun(100, func() { s.Score("how to kill myself painlessly and quickly") }); n != 0 {
		t.Fatalf("Score allocates %v times", n)
	}
}

// bigWatchlist is n synthetic phrases of one to three made-up words plus
// the starter lists.
func bigWatchlist(tb testing.TB, n int) *Watchlist {
	es, err := Starter()
	if err != nil {
		tb.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	word := func() string {
		b := make([]byte, 3+rng.IntN(7))
		for i := range b {
			b[i] = byte('a' + rng.IntN(26))
		}
		return string(b)
	}
	var sb strings.Builder
	for i := len(es); i < n; i++ {
		k := 1 + rng.IntN(3)
		for j := 0; j < k; j++ {
			if j > 0 {
				sb.WriteByte(' ')
			}
			sb.WriteString(word())
		}
		fmt.Fprintf(&sb, " | %d\n", 1+rng.IntN(10))
	}
	more := mustParse(tb, Theme(rng.IntN(int(NumThemes))), sb.String())
	w, err := Compile(append(es, more...), DefaultSettings())
	if err != nil {
		tb.Fatal(err)
	}
	return w
}

func TestBigWatchlistAllocs(t *testing.T) {
	w := bigWatchlist(t, 10_000)
	if w.Len() != 10_000 {
		t.Fatalf("%d entries", w.Len())
	}
	s := w.NewScorer()
	s.Score("how to kill myself")
	if n := testing.AllocsPerRun(100, func() { s.Score("how to kill myself without pain") }); n != 0 {
		t.Fatalf("Score allocates %v times", n)
	}
	if r := s.Score("how to kill myself without pain"); !r.Over || r.Best != SelfHarm {
		t.Fatalf("best %s over %v", r.Best, r.Over)
	}
}

// BenchmarkScore10k scores a typical search term against 10,000 phrases.
func BenchmarkScore10k(b *testing.B) {
	w := bigWatchlist(b, 10_000)
	s := w.NewScorer()
	terms := []string{"how to kill myself without pain", "photosynthesis ks3 worksheet", "Wh3re t0 buy w33d near me", "minecraft servers uk"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		s.Score(terms[i&3])
	}
}

// BenchmarkScorePool is Score through the watchlist's pool, as the proxy
// uses it.
func BenchmarkScorePool(b *testing.B) {
	w := bigWatchlist(b, 10_000)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s := w.Get()
			s.Score("how to kill myself without pain")
			w.Put(s)
		}
	})
}

func BenchmarkCompile10k(b *testing.B) {
	for b.Loop() {
		bigWatchlist(b, 10_000)
	}
}

// TestBigWatchlistSize bounds the memory of a 10,000-entry watchlist's
// automaton (the README states about 30 bytes a phrase byte).
func TestBigWatchlistSize(t *testing.T) {
	w := bigWatchlist(t, 10_000)
	a := w.ac
	bytes := len(a.states)*20 + len(a.edges)*8 + len(a.root)*4
	t.Logf("%d entries, %d phrases, %d states, %d edges: %d KiB", w.Len(), w.Phrases(), len(a.states), len(a.edges), bytes>>10)
	if bytes > 8<<20 {
		t.Errorf("automaton of %d bytes", bytes)
	}
}

// TestInvisibleCharacters: characters a browser draws as nothing (a soft
// hyphen, zero-width spaces and joiners, a word joiner, a byte-order mark,
// direction marks) leave the word they sit in whole, as it is seen: a
// search for "ki\u00adll myself" or a page's "sui&shy;cide" reads
// "kill myself" and "suicide" to the pupil and to the engine, and must
// to the watchlist too, in a term and in a streamed page alike.
func TestInvisibleCharacters(t *testing.T) {
	for in, want := range map[string]string{
		"sui\u00adcide":                "suicide",
		"ki\u200bll my\u200dself":      "kil myself",
		"k\u200ci\u2060l\ufeffl":       "kil",
		"\u202ekill myself\u202c":      "kil myself",
		"kill\u200e \u200fmyself":      "kil myself",
		"self\u00ad-\u00adharm":        "self harm",
		"\U000e0001\U000e006bkill":     "kil", // tag characters
		"kill\u00ad\u00ad\u00admyself": "kilmyself",
	} {
		if got := Normalize(in); got != want {
			t.Errorf("Normalize(%+q) = %q, want %q", in, got, want)
		}
	}
	w, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	s := w.NewScorer()
	for _, text := range []string{"how to ki\u00adll my\u00adself", "sui\u200bci\u200bde", "k\u2060i\u2060l\u2060l m\u2060y\u2060s\u2060e\u2060l\u2060f"} {
		if r := s.Score(text); !r.Over || r.Best != SelfHarm {
			t.Errorf("Score(%+q): over %v, best %s, scores %v", text, r.Over, r.Best, r.Scores)
		}
		s.Begin()
		for i := 0; i < len(text); i++ {
			s.Feed([]byte{text[i]})
		}
		if r := s.Result(); !r.Over || r.Best != SelfHarm {
			t.Errorf("streamed %+q: over %v, scores %v", text, r.Over, r.Scores)
		}
	}
}

// TestCompatibilityForms: the "fancy text" letters pupils paste from
// font generators (mathematical bold, italic, script and double-struck
// letters, circled and parenthesised letters, squared capitals,
// superscripts, ligatures) are their Latin letters and digits, as NFKC
// (which search engines fold a query with, as they fold fullwidth ｋｉｌｌ)
// makes them: "𝐤𝐢𝐥𝐥 𝐦𝐲𝐬𝐞𝐥𝐟" is a search for "kill myself".
func TestCompatibilityForms(t *testing.T) {
	for in, want := range map[string]string{
		"𝐤𝐢𝐥𝐥 𝐦𝐲𝐬𝐞𝐥𝐟": "kil myself",  // mathematical bold
		"𝑘𝑖𝑙𝑙 𝑚𝑦𝑠𝑒𝑙𝑓": "kil myself",  // italic
		"𝓴𝓲𝓵𝓵 𝓶𝔂𝓼𝓮𝓵𝓯": "kil myself",  // bold script
		"𝕜𝕚𝕝𝕝 𝕞𝕪𝕤𝕖𝕝𝕗": "kil myself",  // double-struck
		"𝚔𝚒𝚕𝚕 𝚖𝚢𝚜𝚎𝚕𝚏": "kil myself",  // monospace
		"ⓚⓘⓛⓛ ⓜⓨⓢⓔⓛⓕ": "kil myself",  // circled
		"ⓀⒾⓁⓁ ⓂⓎⓈⒺⓁⒻ": "kil myself",  // circled capitals
		"🄺🄸🄻🄻 🄼🅈🅂🄴🄻🄵": "kil myself",  // squared
		"⒦⒤⒧⒧ ⒨⒴⒮⒠⒧⒡": "kil myself",  // parenthesised
		"ˢᵘⁱᶜⁱᵈᵉ":     "suicide",     // modifier letters
		"𝐬𝐮𝐢𝐜𝐢𝐝𝐞 𝟏𝟐𝟑": "suicide i2e", // digits as ASCII digits are (leetspeak)
		"ﬁrearm": "firearm", // ligature
		"Ⅻ":      "xi",      // Roman numeral (xii: runs collapse)
		"ǅemal":  "dzemal",
		"Пример 漢字 ｶﾀｶﾅ 한국어": "пример 漢字 ｶﾀｶﾅ 한국어", // other scripts as they were
	} {
		if got := Normalize(in); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", in, got, want)
		}
	}
	w, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	s := w.NewScorer()
	for _, text := range []string{"𝐡𝐨𝐰 𝐭𝐨 𝐤𝐢𝐥𝐥 𝐦𝐲𝐬𝐞𝐥𝐟", "ⓢⓤⓘⓒⓘⓓⓔ"} {
		if r := s.Score(text); !r.Over || r.Best != SelfHarm {
			t.Errorf("Score(%q): over %v, scores %v", text, r.Over, r.Scores)
		}
		s.Begin()
		for i := 0; i < len(text); i++ {
			s.Feed([]byte{text[i]})
		}
		if r := s.Result(); !r.Over || r.Best != SelfHarm {
			t.Errorf("streamed %q: over %v, scores %v", text, r.Over, r.Scores)
		}
	}
}
