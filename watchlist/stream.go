package watchlist

import "unicode/utf8"

// Streaming: a Scorer can also score a text that arrives in pieces (a web
// page as the proxy relays it), without holding it. Begin starts a text,
// Feed gives it the next piece (any split: inside a word, a phrase or a
// UTF-8 sequence), Break marks a word break between pieces (a tag), and
// Result is the score so far. The automaton's state, the normaliser's
// last letter and up to 3 bytes of an unfinished UTF-8 sequence are all
// that is kept between pieces; each entry counts once per text, as Score
// counts it. Settings.ContentReport and ContentBlock are the page
// thresholds the proxy compares Result's scores with.

// Begin starts a streamed text.
func (s *Scorer) Begin() {
	s.matches = s.matches[:0]
	if s.gen++; s.gen == 0 {
		clear(s.seen)
		s.gen = 1
	}
	s.stream = streamState{last: ' '}
	s.res = Result{}
	s.step(' ') // the text starts at a word boundary
}

// streamState is what a streamed text keeps between pieces.
type streamState struct {
	st    int32   // automaton state
	last  rune    // the normaliser's last emitted rune (runs collapse)
	pend  [4]byte // an unfinished UTF-8 sequence
	npend int
}

// Feed scores the next piece of a streamed text. It does not allocate
// once the Scorer is warm (matches grow to at most one per entry).
func (s *Scorer) Feed(p []byte) {
	i := 0
	if s.stream.npend > 0 {
		// Complete the sequence the last piece ended inside.
		for i < len(p) && s.stream.npend < 4 && !utf8.FullRune(s.stream.pend[:s.stream.npend]) {
			s.stream.pend[s.stream.npend] = p[i]
			s.stream.npend++
			i++
		}
		if !utf8.FullRune(s.stream.pend[:s.stream.npend]) {
			return // still unfinished (p was short)
		}
		r, _ := utf8.DecodeRune(s.stream.pend[:s.stream.npend])
		s.stream.npend = 0
		s.foldRune(r)
	}
	a := s.w.ac
	for i < len(p) {
		c := p[i]
		if c < utf8.RuneSelf {
			// The hot path, inlined: ASCII text.
			i++
			m := asciiMap[c]
			if m == 0 || rune(m) == s.stream.last {
				continue
			}
			s.stream.last = rune(m)
			st := a.step(s.stream.st, m)
			s.stream.st = st
			if x := &a.states[st]; x.out >= 0 || x.dict >= 0 {
				s.matched(x)
			}
			continue
		}
		if !utf8.FullRune(p[i:]) {
			s.stream.npend = copy(s.stream.pend[:], p[i:])
			return
		}
		r, size := utf8.DecodeRune(p[i:])
		i += size
		s.foldRune(r)
	}
}

// FeedString is Feed for a string.
func (s *Scorer) FeedString(text string) {
	for len(text) > 0 { // through a small stack buffer: no conversion
		var b [256]byte
		n := copy(b[:], text)
		s.Feed(b[:n])
		text = text[n:]
	}
}

// Break marks a word break (a tag between two pieces of text).
func (s *Scorer) Break() {
	if s.stream.npend > 0 {
		s.stream.npend = 0
		s.emit(' ')
	}
	s.emit(' ')
}

// Result ends the streamed text and gives its score, as Score gives it
// for a whole text: Matches is the Scorer's buffer.
func (s *Scorer) Result() Result {
	s.Break() // a phrase at the very end still ends on a word boundary
	r := s.res
	r.Matches = s.matches
	s.best(&r)
	return r
}

// Scores is the running per-theme score of the streamed text (cheaper than
// Result: no best theme).
func (s *Scorer) Scores() *[NumThemes]int { return &s.res.Scores }

// emit feeds one normalised rune to the automaton.
func (s *Scorer) emit(r rune) {
	if r == s.stream.last {
		return
	}
	s.stream.last = r
	if r < utf8.RuneSelf {
		s.step(byte(r))
		return
	}
	var b [utf8.UTFMax]byte
	n := utf8.EncodeRune(b[:], r)
	for _, c := range b[:n] {
		s.step(c)
	}
}

func (s *Scorer) step(b byte) {
	a := s.w.ac
	st := a.step(s.stream.st, b)
	s.stream.st = st
	s.matched(&a.states[st])
}

// matched counts the patterns ending at state x.
func (s *Scorer) matched(x *acState) {
	a := s.w.ac
	if x.out >= 0 {
		s.found(&s.res, x.out)
	}
	for d := x.dict; d >= 0; d = a.states[d].dict {
		s.found(&s.res, a.states[d].out)
	}
}

// foldRune is normalizer.fold for the stream: the same rules, emitting
// into the automaton instead of a buffer.
func (s *Scorer) foldRune(r rune) {
	n := normalizer{dst: s.fold[:0], last: 0}
	n.fold(r)
	for _, c := range string(n.dst) {
		s.emit(c)
	}
	s.fold = n.dst[:0]
}
