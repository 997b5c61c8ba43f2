package config

import (
	"strings"
	"testing"
)

// TestBlockPageReachable: block_response: blockpage is refused unless the
// page is served on port 80 of the address the DNS answer points to.
func TestBlockPageReachable(t *testing.T) {
	for _, tt := range []struct{ body, err string }{
		{"dns: {block_response: blockpage}\nadmin: {listen: \"0.0.0.0:9153\"}\n",
			"1:23: dns.block_response: blockpage needs dns.block_page_ip"},
		{"dns: {block_response: blockpage, block_page_ip: 10.0.0.5, block_page_http: false}\nadmin: {listen: \"0.0.0.0:9153\"}\n",
			"1:76: dns.block_page_http: with block_response: blockpage, browsers are sent to port 80 of 10.0.0.5, where nothing serves the block page"},
		{"dns: {block_response: blockpage, block_page_ip: 10.0.0.5}\nproxy: {listen: \"\"}\n",
			"dns.block_response: blockpage needs the HTTP proxy"},
		// Served: by the block-page listener, or by the admin listener on port 80.
		{"dns: {block_response: blockpage, block_page_ip: 10.0.0.5}\n", ""},
		{"dns: {block_response: blockpage}\nadmin: {listen: \"10.0.0.5:9153\"}\n", ""},
		{"dns: {block_response: blockpage, block_page_http: false}\nadmin: {listen: \"10.0.0.5:80\"}\n", ""},
		{"dns: {block_response: blockpage, block_page_ip: 10.0.0.5, block_page_http: false}\nadmin: {listen: \":80\"}\n", ""},
		{"dns: {block_response: nxdomain}\nadmin: {listen: \"0.0.0.0:9153\"}\n", ""},
	} {
		_, err := Parse([]byte(tt.body), "g.yaml")
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("%q: %v", tt.body, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%q: %v; want %q", tt.body, err, tt.err)
		}
	}
}
