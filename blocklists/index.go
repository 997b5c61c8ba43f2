package blocklists

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"math/bits"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"time"
)

// ListID numbers a list inside one Index.
type ListID uint16

// Lists with no category of their own (group allow and deny lists) are
// given one bit each from FirstListBit up, so that a single lookup also
// says which of those lists matched.
const (
	FirstListBit Category = 32
	MaxListBits  int      = 31
)

// ListInfo describes one list loaded into an Index.
type ListInfo struct {
	ID         ListID
	Name       string // "hagezi-nsfw", or "ut1/adult" for a squidGuard sub-list
	Source     string // config name of the source ("embedded" for built-in lists)
	Category   Category
	Restricted bool   // entries must never be shown
	Format     Format // format used (after detection)
	File       string // file read ("" for embedded lists)
	Entries    int
	Invalid    int
	Errors     []LineError
	Loaded     time.Time
	Err        string // why the list is missing from this index, if it is
}

// combo is one distinct set of (list, mode) memberships shared by names.
type combo struct {
	sub, exact, exSub, exExact CategorySet
	lists                      []uint32 // listID<<2 | mode, sorted
}

// Index maps domains, URL prefixes, IP prefixes and hashed entries to
// category sets. It is immutable once built and safe for concurrent reads
// without locks.
//
// Domains are stored as 64-bit hashes, not strings: each slot keeps a 40-bit
// tag and a 24-bit combo number, and the slot position comes from other bits
// of the hash. The chance that an unlisted name is mistaken for a listed one
// is about 2^-40 per probe (the seed is random per build, so it cannot be
// aimed at). The matched entry is always a suffix of the looked-up name, so
// no names need storing to explain a match.
type Index struct {
	seed maphash.Seed
	// slots may live outside the Go heap (slots_unix.go), freed by a
	// cleanup once the Index is unreachable: every method that reads it
	// keeps ix alive to its end (runtime.KeepAlive).
	slots     []uint64
	offHeap   int64  // bytes of slots outside the Go heap
	labelMask uint64 // bit n set when some entry has n labels (63 = 63 or more)
	combos    []combo
	names     int // distinct domain entries

	urls    map[string][]urlRule // host → rules, longest path first
	urlN    int
	ips     map[netip.Prefix]uint32
	ip4Lens uint64 // prefix lengths present; bit n = /n (IPv4)
	ip6Lens [3]uint64
	hashes  map[[32]byte]uint32

	lists []ListInfo
	built time.Time
}

type urlRule struct {
	path  string
	combo uint32
}

const (
	comboBits = 24
	comboMask = 1<<comboBits - 1
	maxLoad   = 0.5
)

// find returns the combo number of name, or 0.
func (ix *Index) find(name string) uint32 {
	h := maphash.String(ix.seed, name)
	pos := (uint64(uint32(h)) * uint64(len(ix.slots))) >> 32
	c := ix.probe(pos, h>>comboBits, ix.slots[pos])
	runtime.KeepAlive(ix)
	return c
}

// probe finishes a lookup whose first slot v (at pos) is already loaded.
func (ix *Index) probe(pos, tag, v uint64) uint32 {
	n := uint64(len(ix.slots))
	for {
		if v == 0 {
			runtime.KeepAlive(ix)
			return 0
		}
		if v>>comboBits == tag {
			runtime.KeepAlive(ix)
			return uint32(v & comboMask)
		}
		pos++
		if pos == n {
			pos = 0
		}
		v = ix.slots[pos]
	}
}

// Trace records where a lookup matched (most specific first), so that
// explaining a match needs no second walk. The zero value is ready to use.
type Trace struct {
	n     int
	off   [maxTrace]int32 // offset of the matching suffix in the name
	combo [maxTrace]uint32
}

const (
	maxTrace = 8 // matches remembered per lookup; more still count for categories
	batch    = 8 // suffixes probed together
)

// Lookup returns the categories name is listed under, walking from the name
// up through its parent domains and applying exceptions. name must be
// normalised (see NormalizeDomain). It does not allocate.
func (ix *Index) Lookup(name string) CategorySet {
	return ix.LookupTrace(name, nil)
}

// LookupTrace is Lookup that also records the matches in tr (if not nil)
// for ExplainTrace.
func (ix *Index) LookupTrace(name string, tr *Trace) CategorySet {
	if ix == nil || name == "" {
		return 0
	}
	if tr != nil {
		tr.n = 0
	}
	var block, allow CategorySet
	if len(ix.slots) > 0 {
		// Hash a batch of suffixes, load their first slots together so the
		// cache misses overlap, then resolve each.
		var offs [batch]int32
		var pos, tags, first [batch]uint64
		level := strings.Count(name, ".") + 1
		n := uint64(len(ix.slots))
		for i := 0; i >= 0; {
			k := 0
			for k < batch && i >= 0 {
				if ix.labelMask&(1<<min(level, 63)) != 0 {
					h := maphash.String(ix.seed, name[i:])
					offs[k], pos[k], tags[k] = int32(i), (uint64(uint32(h))*n)>>32, h>>comboBits
					k++
				}
				if j := strings.IndexByte(name[i:], '.'); j >= 0 {
					i += j + 1
					level--
				} else {
					i = -1
				}
			}
			for x := 0; x < k; x++ {
				first[x] = ix.slots[pos[x]]
			}
			for x := 0; x < k; x++ {
				c := ix.probe(pos[x], tags[x], first[x])
				if c == 0 {
					continue
				}
				cb := &ix.combos[c]
				block |= cb.sub
				allow |= cb.exSub
				if offs[x] == 0 {
					block |= cb.exact
					allow |= cb.exExact
				}
				if tr != nil && tr.n < maxTrace {
					tr.off[tr.n], tr.combo[tr.n] = offs[x], c
					tr.n++
				}
			}
		}
	}
	if len(ix.hashes) > 0 {
		block |= ix.hashedName(name)
	}
	runtime.KeepAlive(ix) // slots may be outside the heap
	return block &^ allow
}

// Nearest is the offset in the name of the most specific match
// LookupTrace recorded in tr whose categories meet want (0: the name
// itself; a parent's is the index of its first byte), and whether there
// was one. full is true when the trace held every match (past maxTrace
// it may not have).
func (ix *Index) Nearest(tr *Trace, want CategorySet) (off int, found, full bool) {
	if ix == nil || tr == nil {
		return 0, false, true
	}
	off = -1
	for k := 0; k < tr.n; k++ {
		cb := &ix.combos[tr.combo[k]]
		cats := cb.sub
		if tr.off[k] == 0 {
			cats |= cb.exact
		}
		if cats&want != 0 && (off < 0 || int(tr.off[k]) < off) {
			off = int(tr.off[k])
		}
	}
	return max(off, 0), off >= 0, tr.n < maxTrace
}

// ExplainTrace is Explain using the matches LookupTrace recorded for the
// same name; it falls back to Explain when the trace is full.
func (ix *Index) ExplainTrace(name string, tr *Trace, want CategorySet) (Match, bool) {
	if tr == nil || tr.n == maxTrace {
		return ix.Explain(name, want)
	}
	for k := 0; k < tr.n; k++ {
		if m, ok := ix.explainCombo(tr.combo[k], want, tr.off[k] == 0); ok {
			m.Entry = name[tr.off[k]:]
			return m, true
		}
	}
	return ix.explainHashed(name, want)
}

// hashedName checks host and every parent of it against the hashed
// entries.
func (ix *Index) hashedName(host string) CategorySet {
	var set CategorySet
	var buf [256]byte
	for i := 0; ; {
		suffix := host[i:]
		if c, ok := ix.hashes[sha256.Sum256(append(buf[:0], suffix...))]; ok {
			set |= ix.combos[c].sub | ix.combos[c].exact
		}
		j := strings.IndexByte(suffix, '.')
		if j < 0 {
			return set
		}
		i += j + 1
	}
}

// hashedURL checks every host/path prefix (ending before a '/' or '?',
// or the whole path) against the hashed entries, for the host as asked and
// without a leading "www." (list publishers hash either).
func (ix *Index) hashedURL(host, path string) CategorySet {
	var set CategorySet
	var buf [512]byte
	for v := newURLForms(host, path); ; {
		b, ok := v.next(buf[:0])
		if !ok {
			return set
		}
		if c, ok := ix.hashes[sha256.Sum256(b)]; ok {
			set |= ix.combos[c].sub | ix.combos[c].exact
		}
	}
}

// prefixEnds reports whether path[:j] is a prefix a hashed URL entry may
// name: the whole path, or a part ending before a '/', '?' or ';', or,
// in the query (from q, the index of its '?', on), before a '&', so that
// an entry for page?id=5 is not dodged with page?id=5&x=1, as a plain
// entry is not. (The canonical path has no ';': path parameters are
// dropped, as Java servers drop /page.html;jsessionid=x; one in the query
// still ends a prefix.)
func prefixEnds(path string, j, q int) bool {
	if j == len(path) {
		return true
	}
	switch path[j] {
	case '/', '?', ';':
		return true
	case '&':
		return j > q
	}
	return false
}

// queryAt is the index of path's '?', or len(path).
func queryAt(path string) int {
	if q := strings.IndexByte(path, '?'); q >= 0 {
		return q
	}
	return len(path)
}

// urlForms yields the host/path forms of a request that a hashed URL
// entry may name, on the host as asked and without a leading "www.":
//
//   - every prefix of the path that prefixEnds allows and every prefix
//     through one of its slashes (a directory's entry, "host/dir/", covers
//     the pages under it, as a plain entry does);
//   - each query parameter alone after the path, so that an entry with
//     one parameter ("page?id=5") is not dodged by putting others before
//     it ("page?x=1&id=5"): a site reads its parameters in any order;
//   - for a query of several parameters, the entry's canonical form of
//     each set of two or more of them: sorted (sortedQuery), so that an
//     entry with several, hashed in that form, is not dodged by another
//     order or by others between. Every such set for up to
//     maxQuerySubsets parameters (2^n-n-1 forms); for a longer query,
//     every pair and, up to maxTripleParams parameters, every three of
//     them (the entries a list holds name one, two or three), then the
//     first four, five, ... of them sorted; up to maxSortedParams
//     parameters, beyond which only the prefixes and each one alone. A
//     hash of an entry's parameters in another order (a publisher's own)
//     still matches them sent in that order (the prefixes).
type urlForms struct {
	hosts [2]string
	nh, h int // hosts to try; the one being tried
	path  string
	q     int // index of path's '?'
	phase int
	j     int  // phase 0: the prefix's end; phase 1: where the next parameter starts
	ended bool // phase 0: the prefix ending at j was tried
	// Phases 2 and 3: the query's parameters, sorted, and the next set of
	// them: a bit mask for a short query; for a long one the indexes of
	// the k parameters of the next pair or three (phase 2), then the
	// number of the first ones (phase 3).
	params [maxSortedParams]string
	np     int
	set    uint32
	k      int
	comb   [3]uint8
}

const (
	maxQuerySubsets = 6  // parameters whose every set is tried (57 forms)
	maxTripleParams = 12 // parameters whose every three are tried (220 forms with the 66 pairs)
	maxSortedParams = 32 // parameters sorted at all, and whose every pair is tried (496 forms)
)

func newURLForms(host, path string) urlForms {
	v := urlForms{hosts: [2]string{host, trimWWW(host)}, nh: 1, path: path, q: queryAt(path)}
	if len(v.hosts[1]) != len(host) {
		v.nh = 2
	}
	if v.q < len(path) {
		for rest := path[v.q+1:]; rest != ""; {
			var p string
			p, rest, _ = strings.Cut(rest, "&")
			if p == "" {
				continue
			}
			if v.np == maxSortedParams {
				v.np = 0 // too many to sort
				break
			}
			// Insertion sort: a handful of parameters, no allocation.
			i := v.np
			for i > 0 && v.params[i-1] > p {
				v.params[i] = v.params[i-1]
				i--
			}
			v.params[i] = p
			v.np++
		}
		if v.np < 2 {
			v.np = 0
		}
	}
	return v
}

// next appends the next form to dst and returns it; false when there are
// no more.
func (v *urlForms) next(dst []byte) ([]byte, bool) {
	for v.h < v.nh {
		host := v.hosts[v.h]
		switch v.phase {
		case 0: // prefixes of the path as asked
			for v.j <= len(v.path) {
				j := v.j
				if !v.ended {
					v.ended = true
					if j > 0 && prefixEnds(v.path, j, v.q) {
						return append(append(dst, host...), v.path[:j]...), true
					}
				}
				v.ended = false
				v.j++
				// A directory's entry ("host/", "host/dir/") covers the
				// pages under it, as a plain entry's prefix does: the
				// prefix through each slash of the path too (unless the
				// next position ends one, which yields it anyway).
				if j < v.q && v.path[j] == '/' && !prefixEnds(v.path, j+1, v.q) {
					return append(append(dst, host...), v.path[:j+1]...), true
				}
			}
			v.phase, v.j = 1, v.q+1
		case 1: // each parameter alone, but the first (a prefix already)
			for v.j < len(v.path) {
				i := v.j
				p, _, _ := strings.Cut(v.path[i:], "&")
				v.j = i + len(p) + 1
				if i > v.q+1 && p != "" {
					dst = append(append(dst, host...), v.path[:v.q+1]...)
					return append(dst, p...), true
				}
			}
			v.phase, v.set = 2, 0
		case 2: // sets of two or more parameters, sorted
			if v.np <= maxQuerySubsets {
				for v.set++; v.set < 1<<v.np; v.set++ {
					if v.set&(v.set-1) == 0 {
						continue // one parameter: phase 1's
					}
					dst = append(append(dst, host...), v.path[:v.q+1]...)
					first := true
					for k := 0; k < v.np; k++ {
						if v.set&(1<<k) != 0 {
							if !first {
								dst = append(dst, '&')
							}
							dst, first = append(dst, v.params[k]...), false
						}
					}
					return dst, true
				}
				v.phase += 2
				continue
			}
			if v.nextComb() {
				dst = append(append(dst, host...), v.path[:v.q+1]...)
				for i := 0; i < v.k; i++ {
					if i > 0 {
						dst = append(dst, '&')
					}
					dst = append(dst, v.params[v.comb[i]]...)
				}
				return dst, true
			}
			v.phase, v.set = 3, uint32(v.k)
		case 3: // a long query's first parameters, sorted, beyond phase 2's
			if v.set++; int(v.set) <= v.np {
				dst = append(append(dst, host...), v.path[:v.q+1]...)
				for k := 0; k < int(v.set); k++ {
					if k > 0 {
						dst = append(dst, '&')
					}
					dst = append(dst, v.params[k]...)
				}
				return dst, true
			}
			v.phase++
		default:
			v.h++
			v.phase, v.j, v.ended, v.k = 0, 0, false, 0
		}
	}
	return dst, false
}

// nextComb moves v.comb to a long query's next pair or three of
// parameters (every pair, then every three up to maxTripleParams), in
// order; false when there are no more.
func (v *urlForms) nextComb() bool {
	n := v.np
	if v.k == 0 {
		v.k, v.comb = 2, [3]uint8{0, 1}
		return true
	}
	for i := v.k - 1; i >= 0; i-- {
		if int(v.comb[i]) < n-v.k+i {
			v.comb[i]++
			for j := i + 1; j < v.k; j++ {
				v.comb[j] = v.comb[j-1] + 1
			}
			return true
		}
	}
	if v.k == 3 || n > maxTripleParams {
		return false
	}
	v.k, v.comb = 3, [3]uint8{0, 1, 2}
	return true
}

// trimWWW is stripWWW for a string, without copying.
func trimWWW(name string) string {
	if len(name) < 4 || name[0] != 'w' || name[1] != 'w' || name[2] != 'w' {
		return name
	}
	i := 3
	for i < len(name) && name[i] >= '0' && name[i] <= '9' {
		i++
	}
	if i >= len(name) || name[i] != '.' || strings.IndexByte(name[i+1:], '.') < 0 {
		return name
	}
	return name[i+1:]
}

// LookupURL returns the categories of a URL given as normalised host and
// canonical path ("/a/b?q", see AppendCanonicalPath; policy.Engine.Decide
// makes it), as a block list matches it: URL-list rules whose host is the
// host or a parent and whose path is a prefix of path (squidGuard's rule;
// over-blocking is the safe side) or, for a rule with a query, whose
// parameters are all among path's (ruleMatch), plus hashed URL entries (the
// SHA-256 of host/path for every prefix of path ending before a '/', '?' or
// ';', or a '&' in the query, and of the whole, and of the query's
// parameters alone and in sorted sets, with and without a leading "www.":
// urlForms). It does not allocate.
func (ix *Index) LookupURL(host, path string) CategorySet {
	set, _ := ix.LookupURLBounded(host, path)
	return set
}

// LookupSite returns the categories of the URL entries that cover the
// whole site host names, as a block list matches them: LookupURL for the
// site's root, "/". That is the URL rules with no path or "/" (and no
// query) on host or a parent, the hosts they cover in LookupURL (a URL
// list's bare host covers the whole site), and the hashed entries of
// "host/" for host as asked and without a leading "www." (the forms
// hashedURL tries for "/"; not for parents, which a hashed URL entry does
// not cover): one hash more per name, two with a "www.". A decision on a
// name alone (a DNS query, a CONNECT), which cannot tell one page from
// another, adds them to Lookup's, so that the resolver does not answer,
// nor the proxy tunnel, a site a URL entry blocks. Allow lists do not
// take it (an allow entry host/ allows pages, not the name). It does not
// allocate.
func (ix *Index) LookupSite(host string) CategorySet {
	if ix == nil || host == "" {
		return 0
	}
	var set CategorySet
	if len(ix.urls) > 0 {
		for i := 0; ; {
			suffix := host[i:]
			rules := ix.urls[suffix]
			// Longest path first: the whole-site rules ("", "/") are last.
			for k := len(rules) - 1; k >= 0 && len(rules[k].path) <= 1; k-- {
				cb := &ix.combos[rules[k].combo]
				set |= cb.sub | cb.exact
			}
			j := strings.IndexByte(suffix, '.')
			if j < 0 {
				break
			}
			i += j + 1
		}
	}
	if len(ix.hashes) > 0 {
		set |= ix.hashedSite(host)
	}
	return set
}

// hashedSite checks "host/" against the hashed entries, for host as asked
// and without a leading "www.": the forms hashedURL tries for the path
// "/" (newURLForms), without its walk.
func (ix *Index) hashedSite(host string) CategorySet {
	var set CategorySet
	var buf [256]byte
	hosts := [2]string{host, trimWWW(host)}
	n := 1
	if len(hosts[1]) != len(host) {
		n = 2
	}
	for _, h := range hosts[:n] {
		if c, ok := ix.hashes[sha256.Sum256(append(append(buf[:0], h...), '/'))]; ok {
			set |= ix.combos[c].sub | ix.combos[c].exact
		}
	}
	return set
}

// LookupAllowURL is LookupURL as an allow list matches: a plain rule's
// path must end at a boundary of path (see urlBoundary), so that allowing
// example.com/edu does not allow example.com/education-adult, nor
// youtube.com/watch?v=abc youtube.com/watch?v=abcdef. Hashed entries match
// as in LookupURL (their prefixes already end at a boundary). It does not
// allocate.
func (ix *Index) LookupAllowURL(host, path string) CategorySet {
	_, set := ix.LookupURLBounded(host, path)
	return set
}

// LookupURLBounded is LookupURL (prefix) and LookupAllowURL (bounded) in
// one walk, for an index whose lists serve both as block lists and as
// allow lists. bounded is always within prefix.
func (ix *Index) LookupURLBounded(host, path string) (prefix, bounded CategorySet) {
	if ix == nil {
		return 0, 0
	}
	if len(ix.urls) > 0 {
		for i := 0; ; {
			suffix := host[i:]
			for _, r := range ix.urls[suffix] {
				if pre, bd := ruleMatch(path, r.path); pre {
					cb := &ix.combos[r.combo]
					prefix |= cb.sub | cb.exact
					if bd {
						bounded |= cb.sub | cb.exact
					}
				}
			}
			j := strings.IndexByte(suffix, '.')
			if j < 0 {
				break
			}
			i += j + 1
		}
	}
	if len(ix.hashes) > 0 && path != "" {
		// Hashed names (host and parents) are Lookup's: only URL entries here,
		// so a policy decision hashes each name once.
		h := ix.hashedURL(host, path)
		prefix |= h
		bounded |= h
	}
	return prefix, bounded
}

// paramsWithin reports whether entry, a URL rule's canonical path with a
// query, names path's page with each of its parameters among path's, in
// any order and with others between (a site reads its parameters in any
// order, so page?x=1&id=5 must not dodge page?id=5); its last may be the
// start of one of path's, as a block rule's query is a prefix.
func paramsWithin(path, entry string) bool {
	qe := strings.IndexByte(entry, '?')
	if qe < 0 || len(path) <= qe || path[:qe+1] != entry[:qe+1] {
		return false
	}
	query, params := path[qe+1:], strings.TrimRight(entry[qe+1:], "&")
	for params != "" {
		p, rest, more := strings.Cut(params, "&")
		params = rest
		if p != "" && !hasParam(query, p, !more) {
			return false
		}
	}
	return true
}

// hasParam reports whether query holds the parameter p (or, with prefix,
// one that starts with it).
func hasParam(query, p string, prefix bool) bool {
	for query != "" {
		q, rest, _ := strings.Cut(query, "&")
		query = rest
		if q == p || prefix && strings.HasPrefix(q, p) {
			return true
		}
	}
	return false
}

// ruleMatch reports whether a URL rule's canonical path (entry; its
// query's parameters sorted, sortedQuery) matches path, a canonical request
// path, as a block list matches it (prefix) and as an allow list does
// (bounded, never without prefix). An entry without a query: prefix when
// path starts with it, bounded when also at a boundary (urlBoundary). An
// entry with a query names a set of parameters, in no order: prefix when
// path starts with it or holds each of them (paramsWithin), bounded when
// path holds each of them and names none of them twice (allowParams).
func ruleMatch(path, entry string) (prefix, bounded bool) {
	if strings.IndexByte(entry, '?') < 0 {
		if !strings.HasPrefix(path, entry) {
			return false, false
		}
		return true, urlBoundary(path, entry)
	}
	bounded = allowParams(path, entry)
	return bounded || strings.HasPrefix(path, entry) || paramsWithin(path, entry), bounded
}

// urlBoundary reports whether path, a canonical request path that starts
// with entry (a URL rule's canonical path without a query), matches it at
// a boundary, as allow lists require: the two are equal; or entry ends in
// '/' (or is empty: a bare host), or path continues after it with '/', '?'
// or ';'.
func urlBoundary(path, entry string) bool {
	j := len(entry)
	if j == len(path) || j == 0 {
		return true
	}
	switch path[j] {
	case '/', '?', ';':
		return true
	}
	return entry[j-1] == '/'
}

// allowParams reports whether path, a canonical request path, asks for
// the page of entry, a URL rule's canonical path with a query, with each
// of entry's parameters, in any order, with others or not, and names none
// of them twice: most sites read the last of a repeated parameter, so
// allowing page?id=5 must not allow page?id=5&id=666. It does not
// allocate.
func allowParams(path, entry string) bool {
	qe := strings.IndexByte(entry, '?')
	if len(path) <= qe || path[:qe+1] != entry[:qe+1] {
		return false
	}
	query := path[qe+1:]
	for params := entry[qe+1:]; params != ""; {
		var e string
		e, params, _ = strings.Cut(params, "&")
		if e == "" {
			continue
		}
		name, _, _ := strings.Cut(e, "=")
		found := false
		for rest := query; rest != ""; {
			var p string
			p, rest, _ = strings.Cut(rest, "&")
			if n, _, _ := strings.Cut(p, "="); n != name {
				continue
			}
			if found || p != e {
				return false
			}
			found = true
		}
		if !found {
			return false
		}
	}
	return true
}

// HasPrefixes reports whether the index holds IP prefixes.
func (ix *Index) HasPrefixes() bool { return ix != nil && len(ix.ips) > 0 }

// LookupIP returns the categories of the IP prefixes containing addr.
func (ix *Index) LookupIP(addr netip.Addr) CategorySet {
	if ix == nil || len(ix.ips) == 0 || !addr.IsValid() {
		return 0
	}
	addr = addr.Unmap()
	var set CategorySet
	if v4, ok := EmbeddedIPv4(addr); ok {
		// NAT64, 6to4 or IPv4-compatible: the IPv4 address inside is where
		// the connection goes (the dial guard judges it so too), and the
		// IPv6 form's own entries still apply.
		set = ix.LookupIP(v4)
	}
	if addr.Is4() {
		for m := ix.ip4Lens; m != 0; m &= m - 1 {
			p, _ := addr.Prefix(bits.TrailingZeros64(m))
			if c, ok := ix.ips[p]; ok {
				set |= ix.combos[c].sub
			}
		}
		return set
	}
	for w, m := range ix.ip6Lens {
		for ; m != 0; m &= m - 1 {
			p, _ := addr.Prefix(w*64 + bits.TrailingZeros64(m))
			if c, ok := ix.ips[p]; ok {
				set |= ix.combos[c].sub
			}
		}
	}
	return set
}

// Match explains a lookup: the most specific entry that lists name under
// one of the wanted categories.
type Match struct {
	Entry    string // the matching entry ("*.example.com" for a subtree match); "" for hashed entries
	List     ListID
	Category Category
}

// Explain finds which entry and list made Lookup(name) return a category
// in want. It does not allocate unless the entry is a subtree match
// (which builds the "*." form). ok is false when nothing in want matched.
func (ix *Index) Explain(name string, want CategorySet) (Match, bool) {
	if ix == nil || name == "" || want == 0 {
		return Match{}, false
	}
	if len(ix.slots) > 0 {
		level := strings.Count(name, ".") + 1
		for i := 0; ; {
			suffix := name[i:]
			if ix.labelMask&(1<<min(level, 63)) != 0 {
				if c := ix.find(suffix); c != 0 {
					if m, ok := ix.explainCombo(c, want, i == 0); ok {
						m.Entry = suffix
						return m, true
					}
				}
			}
			j := strings.IndexByte(suffix, '.')
			if j < 0 {
				break
			}
			i += j + 1
			level--
		}
	}
	return ix.explainHashed(name, want)
}

func (ix *Index) explainHashed(name string, want CategorySet) (Match, bool) {
	if len(ix.hashes) == 0 {
		return Match{}, false
	}
	for i := 0; ; {
		suffix := name[i:]
		if c, ok := ix.hashes[sha256.Sum256([]byte(suffix))]; ok {
			if m, ok := ix.explainCombo(c, want, true); ok {
				// The matched name, a suffix of the one asked about: the
				// caller hashes it again for the record (EntryHash), it
				// never shows it.
				m.Entry = suffix
				return m, true
			}
		}
		j := strings.IndexByte(suffix, '.')
		if j < 0 {
			break
		}
		i += j + 1
	}
	return Match{}, false
}

// ExplainURL is Explain for LookupURL.
func (ix *Index) ExplainURL(host, path string, want CategorySet) (Match, bool) {
	return ix.explainURL(host, path, want, false)
}

// ExplainAllowURL is Explain for LookupAllowURL: only rules that match at
// a boundary.
func (ix *Index) ExplainAllowURL(host, path string, want CategorySet) (Match, bool) {
	return ix.explainURL(host, path, want, true)
}

func (ix *Index) explainURL(host, path string, want CategorySet, bounded bool) (Match, bool) {
	if ix == nil || want == 0 {
		return Match{}, false
	}
	for i := 0; ; {
		suffix := host[i:]
		for _, r := range ix.urls[suffix] {
			if pre, bd := ruleMatch(path, r.path); bounded && bd || !bounded && pre {
				if m, ok := ix.explainCombo(r.combo, want, true); ok {
					m.Entry = suffix + r.path
					return m, true
				}
			}
		}
		j := strings.IndexByte(suffix, '.')
		if j < 0 {
			break
		}
		i += j + 1
	}
	if len(ix.hashes) > 0 && (ix.hashedName(host)|ix.hashedURL(host, path))&want != 0 {
		// Hashed entries hide which list matched beyond the category.
		for _, l := range ix.lists {
			if want.Has(l.Category) && l.Format == FormatSHA256 {
				return Match{List: l.ID, Category: l.Category, Entry: ix.hashedURLEntry(host, path, want)}, true
			}
		}
	}
	return Match{}, false
}

// hashedURLEntry is the host/path prefix (or the host or parent) whose
// hash matched, as hashedURL and hashedName try them; "" if none in want.
func (ix *Index) hashedURLEntry(host, path string, want CategorySet) string {
	var buf [512]byte
	for v := newURLForms(host, path); ; {
		b, ok := v.next(buf[:0])
		if !ok {
			break
		}
		if c, ok := ix.hashes[sha256.Sum256(b)]; ok && (ix.combos[c].sub|ix.combos[c].exact)&want != 0 {
			return string(b)
		}
	}
	for i := 0; ; {
		suffix := host[i:]
		if c, ok := ix.hashes[sha256.Sum256([]byte(suffix))]; ok && (ix.combos[c].sub|ix.combos[c].exact)&want != 0 {
			return suffix
		}
		j := strings.IndexByte(suffix, '.')
		if j < 0 {
			return ""
		}
		i += j + 1
	}
}

// EntryHash is how a restricted-tier match is recorded: the SHA-256 (hex)
// of the matched entry's canonical form, the form hashed lists carry, so
// the police can match it against the list. A subtree entry ("*.x") is
// hashed without its "*.". "" stays "".
func EntryHash(entry string) string {
	if entry == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(strings.TrimPrefix(entry, "*.")))
	return hex.EncodeToString(sum[:])
}

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
	v4compat  = netip.MustParsePrefix("::/96")
)

// LocalNAT64 is the local-use NAT64 prefix (RFC 8215), which a network's
// own translator serves.
var LocalNAT64 = netip.MustParsePrefix("64:ff9b:1::/48")

// EmbeddedIPv4 returns the IPv4 address an IPv6 address carries as a
// NAT64 (the well-known 64:ff9b::/96; the local-use 64:ff9b:1::/48 in RFC
// 6052's layout for a /48 prefix: the IPv4 address in bits 48-63 and
// 72-87, bits 64-71 and the suffix zero), 6to4 (2002::/16) or
// IPv4-compatible (::a.b.c.d) address: where the host has such a route, a
// connection to it reaches that IPv4 host, so lists and the proxy's dial
// guard judge it by the IPv4 address. A network may use longer prefixes
// inside the local-use one, with other layouts; those carry none here.
// IPv4-mapped addresses are for Unmap; :: and ::1 carry none.
func EmbeddedIPv4(a netip.Addr) (netip.Addr, bool) {
	if !a.Is6() || a.Is4In6() {
		return netip.Addr{}, false
	}
	a = a.WithZone("")
	b := a.As16()
	switch {
	case nat64.Contains(a):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case LocalNAT64.Contains(a):
		if b[8]|b[11]|b[12]|b[13]|b[14]|b[15] != 0 {
			return netip.Addr{}, false
		}
		return netip.AddrFrom4([4]byte{b[6], b[7], b[9], b[10]}), true
	case sixToFour.Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	case v4compat.Contains(a) && !a.IsUnspecified() && !a.IsLoopback():
		return netip.AddrFrom4([4]byte(b[12:16])), true
	}
	return netip.Addr{}, false
}

// ExplainIP is Explain for LookupIP.
func (ix *Index) ExplainIP(addr netip.Addr, want CategorySet) (Match, bool) {
	if ix == nil || len(ix.ips) == 0 || !addr.IsValid() {
		return Match{}, false
	}
	addr = addr.Unmap()
	if v4, ok := EmbeddedIPv4(addr); ok {
		if m, ok := ix.ExplainIP(v4, want); ok {
			return m, true
		}
	}
	maxBits := 32
	if addr.Is6() {
		maxBits = 128
	}
	for n := maxBits; n >= 0; n-- {
		p, _ := addr.Prefix(n)
		if c, ok := ix.ips[p]; ok {
			if m, ok := ix.explainCombo(c, want, true); ok {
				m.Entry = p.String()
				return m, true
			}
		}
	}
	return Match{}, false
}

func (ix *Index) explainCombo(c uint32, want CategorySet, exact bool) (Match, bool) {
	for _, lm := range ix.combos[c].lists {
		mode := Mode(lm & 3)
		if mode == ModeExceptExact || mode == ModeExceptSubtree || (mode == ModeExact && !exact) {
			continue
		}
		l := &ix.lists[lm>>2]
		if want.Has(l.Category) {
			return Match{List: l.ID, Category: l.Category}, true
		}
	}
	return Match{}, false
}

// List returns the description of a list.
func (ix *Index) List(id ListID) *ListInfo {
	if ix == nil || int(id) >= len(ix.lists) {
		return nil
	}
	return &ix.lists[id]
}

// Lists returns every list in the index, in load order.
func (ix *Index) Lists() []ListInfo {
	if ix == nil {
		return nil
	}
	return ix.lists
}

// IndexStats summarises an index.
type IndexStats struct {
	Domains   int   // distinct domain entries
	URLs      int   // URL rules
	Prefixes  int   // IP prefixes
	Hashed    int   // hashed (restricted) entries
	Combos    int   // distinct list memberships
	Bytes     int64 // estimated memory of the index structures
	OffHeap   int64 // of which outside the Go heap (the hash table, where the platform allows)
	BuiltAt   time.Time
	ListCount int
}

// Stats reports the size of the index.
func (ix *Index) Stats() IndexStats {
	if ix == nil {
		return IndexStats{}
	}
	s := IndexStats{
		Domains: ix.names, URLs: ix.urlN, Prefixes: len(ix.ips), Hashed: len(ix.hashes),
		Combos: len(ix.combos) - 1, BuiltAt: ix.built, ListCount: len(ix.lists),
	}
	s.Bytes = int64(len(ix.slots)) * 8
	s.OffHeap = ix.offHeap
	for _, c := range ix.combos {
		s.Bytes += 56 + int64(len(c.lists))*4
	}
	for h, rules := range ix.urls {
		s.Bytes += int64(len(h)) + 48
		for _, r := range rules {
			s.Bytes += int64(len(r.path)) + 24
		}
	}
	s.Bytes += int64(len(ix.ips)) * 48
	s.Bytes += int64(len(ix.hashes)) * 48
	return s
}

// Builder collects lists and builds an Index. It is not safe for
// concurrent use.
type Builder struct {
	seed   maphash.Seed
	names  map[uint64]uint32 // full hash → combo
	labels uint64
	urls   map[string][]urlRule
	urlN   int
	ips    map[netip.Prefix]uint32
	hashes map[[32]byte]uint32

	combos  []combo
	interns map[string]uint32 // encoded list memberships → combo
	merges  map[uint64]uint32 // (combo<<32 | listmode) → combo
	single  []uint32          // listmode → combo, for the common first insert
	lists   []ListInfo
	keyBuf  []byte
}

// NewBuilder starts an empty index. sizeHint is the expected number of
// domain entries (0 if unknown).
func NewBuilder(sizeHint int) *Builder {
	return &Builder{
		seed:    maphash.MakeSeed(),
		names:   make(map[uint64]uint32, sizeHint),
		urls:    map[string][]urlRule{},
		ips:     map[netip.Prefix]uint32{},
		hashes:  map[[32]byte]uint32{},
		combos:  make([]combo, 1, 64),
		interns: map[string]uint32{},
		merges:  map[uint64]uint32{},
	}
}

// ErrTooManyLists is returned when an index would hold more lists than a
// ListID can number.
var ErrTooManyLists = errors.New("too many lists in one index (limit 16383)")

// AddList registers a list and returns a Sink that adds its entries.
// The returned ListInfo pointer stays valid until Build and may be updated
// (counts, errors) by the caller.
func (b *Builder) AddList(info ListInfo) (*ListInfo, Sink, error) {
	if len(b.lists) >= 1<<14 {
		return nil, nil, ErrTooManyLists
	}
	info.ID = ListID(len(b.lists))
	b.lists = append(b.lists, info)
	return &b.lists[info.ID], &listSink{b: b, id: uint32(info.ID)}, nil
}

// ListInfo returns the info of a list added earlier.
func (b *Builder) ListInfo(id ListID) *ListInfo { return &b.lists[id] }

type listSink struct {
	b  *Builder
	id uint32
}

func (s *listSink) Domain(name []byte, mode Mode) {
	b := s.b
	h := maphash.Bytes(b.seed, name)
	lm := s.id<<2 | uint32(mode)
	old := b.names[h]
	c := b.mergeCombo(old, lm)
	if c != old {
		b.names[h] = c
	}
	b.labels |= 1 << min(countDots(name)+1, 63)
}

func countDots(b []byte) int {
	n := 0
	for _, c := range b {
		if c == '.' {
			n++
		}
	}
	return n
}

func (s *listSink) URL(hostPath []byte, exception bool) {
	if exception {
		return // URL exceptions are not supported; the parser counts them
	}
	host, path := string(hostPath), ""
	if i := strings.IndexByte(host, '/'); i >= 0 {
		host, path = host[:i], sortedQuery(host[i:])
	}
	s.addURL(host, path)
	if id, ok := videoID(host, path); ok {
		// Every address of the same video (video.go).
		for _, f := range videoForms {
			s.addURL(f.host, f.prefix+id)
		}
	}
}

// addURL adds the rule host+path to the list.
func (s *listSink) addURL(host, path string) {
	b := s.b
	lm := s.id<<2 | uint32(ModeSubtree)
	rules := b.urls[host]
	for i := range rules {
		if rules[i].path == path {
			rules[i].combo = b.mergeCombo(rules[i].combo, lm)
			return
		}
	}
	b.urls[host] = append(rules, urlRule{path: path, combo: b.mergeCombo(0, lm)})
	b.urlN++
}

func (s *listSink) Prefix(p netip.Prefix) {
	b := s.b
	p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-unmapBits(p)).Masked()
	b.ips[p] = b.mergeCombo(b.ips[p], s.id<<2|uint32(ModeSubtree))
}

// unmapBits is how many bits a 4-in-6 prefix loses when unmapped.
func unmapBits(p netip.Prefix) int {
	if p.Addr().Is4In6() {
		return 96
	}
	return 0
}

func (s *listSink) Hash(sum [32]byte) {
	b := s.b
	b.hashes[sum] = b.mergeCombo(b.hashes[sum], s.id<<2|uint32(ModeExact))
}

// mergeCombo returns the combo for old's memberships plus lm.
func (b *Builder) mergeCombo(old, lm uint32) uint32 {
	if old == 0 {
		if int(lm) < len(b.single) && b.single[lm] != 0 {
			return b.single[lm]
		}
		c := b.intern([]uint32{lm})
		for len(b.single) <= int(lm) {
			b.single = append(b.single, 0)
		}
		b.single[lm] = c
		return c
	}
	key := uint64(old)<<32 | uint64(lm)
	if c, ok := b.merges[key]; ok {
		return c
	}
	cur := b.combos[old].lists
	if _, found := slices.BinarySearch(cur, lm); found {
		b.merges[key] = old
		return old
	}
	next := make([]uint32, 0, len(cur)+1)
	next = append(next, cur...)
	next = append(next, lm)
	slices.Sort(next)
	c := b.intern(next)
	b.merges[key] = c
	return c
}

func (b *Builder) intern(lists []uint32) uint32 {
	b.keyBuf = b.keyBuf[:0]
	for _, lm := range lists {
		b.keyBuf = append(b.keyBuf, byte(lm), byte(lm>>8), byte(lm>>16), byte(lm>>24))
	}
	if c, ok := b.interns[string(b.keyBuf)]; ok {
		return c
	}
	var cb combo
	cb.lists = lists
	for _, lm := range lists {
		cat := b.lists[lm>>2].Category
		switch Mode(lm & 3) {
		case ModeSubtree:
			cb.sub = cb.sub.Add(cat)
		case ModeExact:
			cb.exact = cb.exact.Add(cat)
		case ModeExceptSubtree:
			cb.exSub = cb.exSub.Add(cat)
		case ModeExceptExact:
			cb.exExact = cb.exExact.Add(cat)
		}
	}
	c := uint32(len(b.combos))
	b.combos = append(b.combos, cb)
	b.interns[string(b.keyBuf)] = c
	return c
}

// Build freezes the collected entries into an Index. The Builder must not
// be used afterwards.
func (b *Builder) Build() (*Index, error) {
	if len(b.combos) > comboMask {
		return nil, fmt.Errorf("blocklists: %d distinct list memberships exceed the index limit of %d", len(b.combos), comboMask)
	}
	ix := &Index{
		seed:      b.seed,
		labelMask: b.labels,
		combos:    b.combos,
		names:     len(b.names),
		urls:      b.urls,
		urlN:      b.urlN,
		ips:       b.ips,
		hashes:    b.hashes,
		lists:     b.lists,
		built:     time.Now(),
	}
	if n := len(b.names); n > 0 {
		size := int(float64(n)/maxLoad) + 1
		var mem []byte
		ix.slots, mem = newSlots(size)
		if mem != nil {
			ix.offHeap = int64(len(mem))
			runtime.AddCleanup(ix, freeSlots, mem)
		}
		for h, c := range b.names {
			pos := (uint64(uint32(h)) * uint64(size)) >> 32
			v := (h>>comboBits)<<comboBits | uint64(c)
			for ix.slots[pos] != 0 {
				pos++
				if pos == uint64(size) {
					pos = 0
				}
			}
			ix.slots[pos] = v
		}
	}
	for _, rules := range ix.urls {
		slices.SortFunc(rules, func(a, b urlRule) int { return len(b.path) - len(a.path) })
	}
	for p := range ix.ips {
		n := p.Bits()
		if p.Addr().Is4() {
			ix.ip4Lens |= 1 << n
		} else {
			ix.ip6Lens[n/64] |= 1 << (n % 64)
		}
	}
	*b = Builder{}
	return ix, nil
}
