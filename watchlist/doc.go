// Package watchlist scores text against weighted safeguarding phrase
// lists, and finds the search terms in search-engine URLs.
//
// A watchlist is a set of phrases, each with a weight, in six themes
// (self-harm and suicide, extremism and radicalisation, bullying, sexual
// content, weapons and violence, drugs). Each theme has a severity and a
// report threshold. Text and phrases are normalised the same way
// (Normalize: case, accents, leetspeak, punctuation, stretched letters)
// and phrases match on word boundaries, all at once, with an Aho-Corasick
// automaton. A Scorer gives per-theme scores, the theme to report and the
// phrases found, without allocating once warmed up.
//
// Search engines (Engines, a table that the config can extend) say which
// hosts, paths and query parameters carry a search term, and which
// parameters or headers turn on the engine's own safe search.
//
// The proxy scores every search term it sees; the real-time content check
// of decrypted pages will score page text with the same Scorer.
package watchlist
