package dns

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse-filter/gatehouse/devices"
	"github.com/gatehouse-filter/gatehouse/policy"
)

// TestRemoteDeviceOfRemovedGroupRefused: a device enrolled in a group the
// config no longer has (renamed or removed at a reload) is refused over
// DoH and DoT, counted with reason "group", logged by name (never the
// token), and never resolved. Before, the unknown group was ignored and
// the device was filtered by the address's network or the default group
// (here staff's, which allows gambling): a year 7 laptop at home could
// fall to a looser policy with nothing said.
func TestRemoteDeviceOfRemovedGroupRefused(t *testing.T) {
	withY7 := strings.Replace(testConfig, "groups:\n", "groups:\n  year7:\n    block: [pornography, gambling]\n", 1)
	var eng atomic.Pointer[policy.Engine]
	eng.Store(engineWith(t, withY7, testFiles))
	rt := startRemote(t, func(o *Options) {
		o.Engine = func() *policy.Engine { return eng.Load() }
	})
	y7, _ := devices.NewToken()
	rt.reg.Set(append(rt.entries, devices.Entry{Hash: devices.Hash(y7), Name: "Laptop-Y7", Group: "year7"}))
	if code, m := rt.dohAsk(t, http.MethodPost, y7, "gamble.example"); code != 200 || m.Rcode != mdns.RcodeNameError {
		t.Fatalf("year7 device while its group exists: %d %v", code, m)
	}

	eng.Store(testEngine(t)) // a reload without year7
	if code, m := rt.dohAsk(t, http.MethodPost, y7, "gamble.example"); code != 200 || m.Rcode != mdns.RcodeRefused || len(m.Answer) != 0 {
		t.Errorf("DoH, device of a removed group: %d %v, want REFUSED", code, m)
	}
	if r, _, err := rt.dotClient(y7).Exchange(dohQuery("gamble.example"), rt.dot); err != nil || r.Rcode != mdns.RcodeRefused || len(r.Answer) != 0 {
		t.Errorf("DoT, device of a removed group: %v %v, want REFUSED", r, err)
	}
	if n := rt.up.count("gamble.example."); n != 0 {
		t.Errorf("gamble.example resolved %d times for a device of a removed group", n)
	}
	got := testutil.ToFloat64(rt.metrics.remoteRefused.WithLabelValues("doh", "group")) +
		testutil.ToFloat64(rt.metrics.remoteRefused.WithLabelValues("dot", "group"))
	if got != 2 {
		t.Errorf("refusals with reason group counted %v, want 2", got)
	}
	if logs := rt.logs.String(); !strings.Contains(logs, "Laptop-Y7") || !strings.Contains(logs, "year7") || strings.Contains(logs, y7) {
		t.Errorf("log does not name the device and its missing group (or names the token):\n%s", logs)
	}
	// The other devices are unaffected.
	if code, m := rt.dohAsk(t, http.MethodPost, rt.student, "gamble.example"); code != 200 || m.Rcode != mdns.RcodeNameError {
		t.Errorf("students device after the reload: %d %v", code, m)
	}
	rt.noTokenIn(t)
}
