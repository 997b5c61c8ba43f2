package dns

import (
	"net"
	"testing"

	mdns "github.com/miekg/dns"
)

// fakeWriter is an in-memory ResponseWriter for benchmarks and fuzzing.
type fakeWriter struct {
	remote net.Addr
	n      int
	last   []byte
}

func (w *fakeWriter) LocalAddr() net.Addr  { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }
func (w *fakeWriter) RemoteAddr() net.Addr { return w.remote }
func (w *fakeWriter) WriteMsg(m *mdns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	return w.write(b)
}
func (w *fakeWriter) write(b []byte) error { w.n++; w.last = append(w.last[:0], b...); return nil }
func (w *fakeWriter) Write(b []byte) (int, error) {
	return len(b), w.write(b)
}
func (w *fakeWriter) Close() error        { return nil }
func (w *fakeWriter) TsigStatus() error   { return nil }
func (w *fakeWriter) TsigTimersOnly(bool) {}
func (w *fakeWriter) Hijack()             {}

func benchQuery(b *testing.B, ts *testServer, name string, from string) {
	w := &fakeWriter{remote: &net.UDPAddr{IP: net.ParseIP(from), Port: 40000}}
	m := new(mdns.Msg)
	m.SetQuestion(name, mdns.TypeA)
	m.SetEdns0(1232, false)
	ts.serve(w, m, "udp") // warm the cache
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m.Id = uint16(i)
		ts.serve(w, m, "udp")
	}
	if w.n == 0 {
		b.Fatal("no answer")
	}
}

// BenchmarkServeCached is the hot path: policy decision, cache hit, patch
// and write.
func BenchmarkServeCached(b *testing.B) {
	ts := startServer(b, nil)
	benchQuery(b, ts, "www.example.org.", staff)
}

// BenchmarkServeBlocked is a blocked name: decision, block answer, event.
func BenchmarkServeBlocked(b *testing.B) {
	ts := startServer(b, nil)
	benchQuery(b, ts, "www.porn.example.", student)
}
