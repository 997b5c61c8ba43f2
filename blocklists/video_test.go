package blocklists

import "testing"

// TestVideoAliases: a URL entry for a YouTube video, in any of its
// addresses, blocks (and on an allow list allows) the video at every
// other; an entry that names more than the video, or another site, is
// taken as it is.
func TestVideoAliases(t *testing.T) {
	b := NewBuilder(0)
	_, s, _ := b.AddList(ListInfo{Name: "videos", Category: FirstListBit})
	for _, e := range []string{"https://www.youtube.com/watch?v=dQw4w9WgXcQ", "youtu.be/9bZkp7q19f0", "m.youtube.com/shorts/AbCdEf12345",
		"youtube.com/watch?v=xyzxyzxyz12&t=30", "example.com/embed/dQw4w9WgXcQ"} {
		hp, err := NormalizeURL(e)
		if err != nil {
			t.Fatal(err)
		}
		s.URL([]byte(hp), false)
	}
	ix, _ := b.Build()
	all := SetOf(FirstListBit)
	for _, tc := range []struct {
		host, path string
		want       bool
	}{
		{"www.youtube.com", "/watch?v=dQw4w9WgXcQ", true},
		{"www.youtube.com", "/embed/dQw4w9WgXcQ?autoplay=1", true},
		{"www.youtube.com", "/shorts/dQw4w9WgXcQ", true},
		{"m.youtube.com", "/live/dQw4w9WgXcQ", true},
		{"youtube.com", "/v/dQw4w9WgXcQ", true},
		{"youtu.be", "/dQw4w9WgXcQ?si=x", true},
		{"www.youtube-nocookie.com", "/embed/dQw4w9WgXcQ", true},
		{"www.youtube.com", "/watch?v=9bZkp7q19f0", true},
		{"www.youtube-nocookie.com", "/embed/9bZkp7q19f0", true},
		{"www.youtube.com", "/watch?v=AbCdEf12345&t=1", true},
		{"youtu.be", "/AbCdEf12345", true},
		{"www.youtube.com", "/embed/0000000000a", false},
		{"youtu.be", "/xyzxyzxyz12", false}, // the entry names a time too
		{"www.youtube.com", "/watch?v=xyzxyzxyz12&t=30", true},
		{"example.com", "/watch?v=dQw4w9WgXcQ", false},
	} {
		path := string(AppendCanonicalPath(nil, tc.path))
		got := ix.LookupURL(tc.host, path) == all
		if got != tc.want {
			t.Errorf("%s%s: blocked %v, want %v", tc.host, tc.path, got, tc.want)
		}
		if tc.want && tc.host != "example.com" {
			if ix.LookupAllowURL(tc.host, path) != all {
				t.Errorf("%s%s: not matched as an allow list matches", tc.host, tc.path)
			}
		}
	}
}
