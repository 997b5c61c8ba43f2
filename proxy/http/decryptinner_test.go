package httpproxy

import (
	"bufio"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse-filter/gatehouse/config"
)

// TestDecryptedInnerRequests: requests inside a decrypted connection to
// an allowed site that name a blocked one another way never reach it.
func TestDecryptedInnerRequests(t *testing.T) {
	ie := newInspectEnv(t, "")
	ie.setDecrypt(config.DecryptAll)
	for _, raw := range []string{
		"GET https://adult.test:%[1]s/ HTTP/1.1\r\nHost: site.test:%[1]s\r\n\r\n",
		"GET http://adult.test:%[1]s/ HTTP/1.1\r\nHost: site.test:%[1]s\r\n\r\n",
		"GET https://site.test:%[1]s/ HTTP/1.1\r\nHost: adult.test:%[1]s\r\n\r\n", // absolute form wins: site.test
		"CONNECT adult.test:%[1]s HTTP/1.1\r\nHost: adult.test:%[1]s\r\n\r\n",
		"GET / HTTP/1.0\r\nHost: adult.test:%[1]s\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: adult.test.:%[1]s\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: ADULT.test:%[1]s\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: site.test:%[1]s\r\nHost: adult.test:%[1]s\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: site.test:%[1]s\r\nX-Forwarded-Host: adult.test\r\n\r\n",
	} {
		req := fmt.Sprintf(raw, ie.port)
		tc := ie.tlsThrough(t, "site.test:"+ie.port, ie.school, "http/1.1")
		fmt.Fprint(tc, req)
		resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
		if err != nil {
			t.Logf("%q: %v", req, err)
			tc.Close()
			continue
		}
		var b strings.Builder
		_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
		resp.Body.Close()
		tc.Close()
		t.Logf("%q: %d %.60q", firstLine(req), resp.StatusCode, b.String())
		if strings.Contains(b.String(), "hello to adult") {
			t.Errorf("%q reached adult.test", req)
		}
	}
}
