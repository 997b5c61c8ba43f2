package watchlist

import (
	"testing"
)

// TestStreamMatchesScore: a text fed in pieces split at every byte
// (inside words, phrases and UTF-8 sequences) scores as Score scores it
// whole.
func TestStreamMatchesScore(t *testing.T) {
	w, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	s := w.NewScorer()
	for _, text := range []string{
		"I want to k1ll mys3lf, I hate my life",
		"Sui\u0301cide squad was a film; suicidé",
		"nothing to see here: photosynthesis worksheet",
		"how to join isis and make a pipe bomb",
		"kiiiiill myseeelf",
	} {
		want := s.Score(text)
		wantMatches := append([]Match(nil), want.Matches...)
		for cut := 0; cut <= len(text); cut++ {
			s.Begin()
			s.Feed([]byte(text[:cut]))
			s.Feed([]byte(text[cut:]))
			got := s.Result()
			if got.Scores != want.Scores || got.Over != want.Over || (got.Over && got.Best != want.Best) || len(got.Matches) != len(wantMatches) {
				t.Fatalf("%q split at %d: %+v, want %+v", text, cut, got, want)
			}
		}
		// One byte at a time.
		s.Begin()
		for i := 0; i < len(text); i++ {
			s.Feed([]byte{text[i]})
		}
		if got := s.Result(); got.Scores != want.Scores {
			t.Fatalf("%q byte by byte: %v, want %v", text, got.Scores, want.Scores)
		}
	}
}

// TestStreamBreak: a break between pieces is a word boundary; without
// one, pieces join into one word.
func TestStreamBreak(t *testing.T) {
	w, _ := Default()
	s := w.NewScorer()
	s.Begin()
	s.FeedString("kill")
	s.Break()
	s.FeedString("myself")
	if r := s.Result(); r.Scores[SelfHarm] < 10 {
		t.Errorf("phrase across a break not found: %v", r.Scores)
	}
	s.Begin()
	s.FeedString("skill")
	s.FeedString("myself")
	if r := s.Result(); r.Scores[SelfHarm] != 0 {
		t.Errorf("joined word matched: %v", r.Scores)
	}
}

func TestStreamAllocs(t *testing.T) {
	w, _ := Default()
	s := w.NewScorer()
	page := []byte("Some text about how to kill myself and suicide, then more text é ü and so on. ")
	s.Begin()
	s.Feed(page)
	s.Result()
	if n := testing.AllocsPerRun(100, func() {
		s.Begin()
		s.Feed(page[:17])
		s.Feed(page[17:])
		s.Result()
	}); n != 0 {
		t.Errorf("%v allocations per streamed text", n)
	}
}

func BenchmarkStream50K(b *testing.B) {
	w := bigWatchlist(b, 10_000)
	s := w.NewScorer()
	var page []byte
	for len(page) < 50<<10 {
		page = append(page, "The quick brown fox jumps over the lazy dog while pupils learn photosynthesis. "...)
	}
	b.SetBytes(int64(len(page)))
	b.ReportAllocs()
	for b.Loop() {
		s.Begin()
		for i := 0; i < len(page); i += 4096 {
			s.Feed(page[i:min(i+4096, len(page))])
		}
		s.Result()
	}
}
