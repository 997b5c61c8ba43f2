package blocklists

import "strings"

// YouTube serves one video at many addresses: /watch?v=ID, /embed/ID,
// /shorts/ID, /live/ID and /v/ID on youtube.com (and its www. and m.
// hosts), youtu.be/ID and youtube-nocookie.com/embed/ID. A URL entry for
// one of them stands for the video, so it is indexed under every one:
// otherwise a pupil opens a video a list blocks by its embed or short
// address, and a teacher's allow entry for a video does not allow its
// embed in a lesson page.

// videoForms are the addresses of the video %s, as URL-list rules (host
// without "www.", canonical path: lower case).
var videoForms = []struct{ host, prefix string }{
	{"youtube.com", "/watch?v="},
	{"youtube.com", "/embed/"},
	{"youtube.com", "/shorts/"},
	{"youtube.com", "/live/"},
	{"youtube.com", "/v/"},
	{"youtu.be", "/"},
	{"youtube-nocookie.com", "/embed/"},
}

// videoID returns the video an entry's host and canonical path name, if
// it is one of videoForms with nothing after the ID.
func videoID(host, path string) (string, bool) {
	switch host {
	case "youtube.com", "m.youtube.com", "youtu.be", "youtube-nocookie.com":
	default:
		return "", false
	}
	if host == "m.youtube.com" {
		host = "youtube.com"
	}
	for _, f := range videoForms {
		if f.host != host || !strings.HasPrefix(path, f.prefix) {
			continue
		}
		id := path[len(f.prefix):]
		if validVideoID(id) {
			return id, true
		}
	}
	return "", false
}

// validVideoID: YouTube's IDs are 11 characters of [A-Za-z0-9_-] (lower
// case here); a few more or fewer are taken, nothing else.
func validVideoID(id string) bool {
	if len(id) < 6 || len(id) > 20 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
