package main

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	mdns "github.com/miekg/dns"

	"github.com/gatehouse-filter/gatehouse/internal/browsertest"
)

// TestBrowserDNSBlockPageReference: with dns.block_response: blockpage, a
// pupil's browser that follows the block answer sees the block page; the
// reference on it is one IT can find (a teacher quotes it to ask why the
// page was blocked): it is on a stored block event for that page, as on
// the proxy's and the transparent listener's pages. Before, the page
// showed a random reference that no event, export or report carried, and
// a request naming any site in its Host header was shown the page (for
// a URL on the IWF list too) with no record at all.
func TestBrowserDNSBlockPageReference(t *testing.T) {
	port := useBlockPagePort(t)

	upstream := testUpstream(t)
	path, _ := writeConfig(t, `
school: {name: Hillside Test School}
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy: {listen: "127.0.0.1:0"}
clients: {allow: [127.0.0.1/32]}
dns:
  listen: ["127.0.0.1:0"]
  upstreams: ["`+upstream+`"]
  block_response: blockpage
  block_page_ip: 127.0.0.1
lists:
  - {name: adult, path: "{{dir}}/adult.txt", category: pornography}
groups:
  students: {networks: [127.0.0.0/8], block: [pornography]}
`, map[string]string{"adult.txt": "porn.example\n"})
	s, _, _ := startServing(t, path)

	// The pupil's device asks Gatehouse's DNS; the answer is the block
	// page's address, which the browser is told to use for the name.
	r := askDNS(t, s.dns.Addrs()[0].String(), "www.porn.example")
	a, ok := r.Answer[0].(*mdns.A)
	if !ok || a.A.String() != "127.0.0.1" {
		t.Fatalf("block answer %v, want the block page address", r.Answer)
	}
	ctx := browsertest.Start(t, chromedp.Flag("host-resolver-rules", "MAP www.porn.example "+a.A.String()))
	resp, err := chromedp.RunResponse(ctx, chromedp.Navigate("http://www.porn.example:"+strconv.Itoa(port)+"/biology/reproduction"))
	if err != nil || resp.Status != 403 {
		t.Fatalf("opening the blocked page: %v %+v", err, resp)
	}
	ref, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('input[name=ref]').value`))
	text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil || !strings.HasPrefix(ref, "GH-") || !strings.Contains(text, ref) || !strings.Contains(text, "Hillside Test School") {
		t.Fatalf("the block page's reference %q (%v):\n%s", ref, err, text)
	}

	// IT looks the reference up.
	deadline := time.Now().Add(10 * time.Second) // the block is stored before the page goes; a safety net only
	var out string
	for {
		s.reports.Writer.Flush()
		var code int
		code, out, _ = runCLI(t, "events", "--all", "--csv", "--since", "1h", "--config", path)
		if code != exitOK {
			t.Fatalf("events: %d", code)
		}
		if strings.Contains(out, ref) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var row string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, ref) {
			row = l
		}
	}
	if row == "" {
		t.Fatalf("the reference %s on the pupil's block page is on no stored event:\n%s", ref, out)
	}
	if !strings.Contains(row, "block") || !strings.Contains(row, "/biology/reproduction") || !strings.Contains(row, "pornography") {
		t.Errorf("the event quoting %s: %s", ref, row)
	}
}
