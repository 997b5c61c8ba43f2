package watchlist

import "sort"

// automaton is an Aho-Corasick automaton over bytes: it finds every
// pattern in a text in one pass, whatever the number of patterns. The root
// has a dense 256-entry table; other states keep their edges sorted in one
// shared slice (most states have one edge). Memory is about 20 bytes per
// state plus 5 per edge.
type automaton struct {
	root   [256]int32
	states []acState
	edges  []acEdge
}

type acState struct {
	first, n int32 // edges[first : first+n], sorted by byte
	fail     int32 // longest proper suffix that is a state
	out      int32 // pattern ending here, or -1
	dict     int32 // nearest state on the fail chain with out >= 0, or -1
}

type acEdge struct {
	b  byte
	to int32
}

// buildAutomaton builds an automaton for patterns; pattern i is reported
// as i. Patterns must be distinct and non-empty.
func buildAutomaton(patterns []string) *automaton {
	// The trie, with map edges while building.
	type tnode struct {
		next map[byte]int32
		out  int32
	}
	trie := []tnode{{out: -1}}
	for i, p := range patterns {
		s := int32(0)
		for j := 0; j < len(p); j++ {
			if trie[s].next == nil {
				trie[s].next = map[byte]int32{}
			}
			t, ok := trie[s].next[p[j]]
			if !ok {
				t = int32(len(trie))
				trie = append(trie, tnode{out: -1})
				trie[s].next[p[j]] = t
			}
			s = t
		}
		trie[s].out = int32(i)
	}
	a := &automaton{states: make([]acState, len(trie))}
	// Flatten the edges, each state's sorted by byte.
	for s := range trie {
		st := &a.states[s]
		st.out, st.dict = trie[s].out, -1
		st.first, st.n = int32(len(a.edges)), int32(len(trie[s].next))
		for b, t := range trie[s].next {
			a.edges = append(a.edges, acEdge{b, t})
		}
		e := a.edges[st.first:]
		sort.Slice(e, func(i, j int) bool { return e[i].b < e[j].b })
	}
	for _, e := range a.edges[a.states[0].first : a.states[0].first+a.states[0].n] {
		a.root[e.b] = e.to
	}
	// Fail and dictionary links, breadth first.
	queue := make([]int32, 0, len(trie))
	for _, e := range a.edges[a.states[0].first : a.states[0].first+a.states[0].n] {
		queue = append(queue, e.to) // fail = root
	}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		st := a.states[s]
		for _, e := range a.edges[st.first : st.first+st.n] {
			f := a.step(st.fail, e.b)
			t := &a.states[e.to]
			t.fail = f
			if a.states[f].out >= 0 {
				t.dict = f
			} else {
				t.dict = a.states[f].dict
			}
			queue = append(queue, e.to)
		}
	}
	return a
}

// step is the transition from state s on byte b, following fail links.
func (a *automaton) step(s int32, b byte) int32 {
	for s != 0 {
		st := &a.states[s]
		e := a.edges[st.first : st.first+st.n]
		if len(e) <= 8 {
			for i := range e {
				if e[i].b == b {
					return e[i].to
				}
			}
		} else {
			lo, hi := 0, len(e)
			for lo < hi {
				m := int(uint(lo+hi) >> 1)
				if e[m].b < b {
					lo = m + 1
				} else {
					hi = m
				}
			}
			if lo < len(e) && e[lo].b == b {
				return e[lo].to
			}
		}
		s = st.fail
	}
	return a.root[b]
}
