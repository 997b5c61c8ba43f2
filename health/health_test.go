package health

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestStartingUntilReady: before every part has registered, /healthz does
// not claim all is well; afterwards problems are sorted by key.
func TestStartingUntilReady(t *testing.T) {
	var r Registry
	get := func() (int, Report) {
		rec := httptest.NewRecorder()
		r.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
		var rep Report
		if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
			t.Fatal(err)
		}
		return rec.Code, rep
	}
	if code, rep := get(); code != http.StatusServiceUnavailable || len(rep.Problems) != 1 || rep.Problems[0] != Starting {
		t.Fatalf("before Ready: %d %+v", code, rep)
	}
	var problems []Problem
	r.Register("b", func() []Problem { return problems })
	r.Register("a", func() []Problem { return nil })
	r.Ready()
	if code, rep := get(); code != http.StatusOK || rep.Status != "ok" || rep.Problems == nil || len(rep.Problems) != 0 {
		t.Fatalf("healthy: %d %+v", code, rep)
	}
	problems = []Problem{{Key: "z", Part: "x", Message: "z down"}, {Key: "m", Part: "x", Message: "m down"}}
	code, rep := get()
	if code != http.StatusServiceUnavailable || rep.Status != "degraded" || len(rep.Problems) != 2 || rep.Problems[0].Key != "m" {
		t.Fatalf("degraded: %d %+v", code, rep)
	}
}

// TestWarningsKeep200: a warning alone (a CA about to expire) is listed
// but /healthz stays 200; with a real problem beside it, 503.
func TestWarningsKeep200(t *testing.T) {
	var r Registry
	problems := []Problem{{Key: "proxy/ca", Part: "proxy", Message: "expires soon", Warning: true}}
	r.Register("ca", func() []Problem { return problems })
	r.Ready()
	get := func() (int, Report) {
		rec := httptest.NewRecorder()
		r.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
		var rep Report
		if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
			t.Fatal(err)
		}
		return rec.Code, rep
	}
	if code, rep := get(); code != http.StatusOK || rep.Status != "warning" || len(rep.Problems) != 1 {
		t.Fatalf("warning only: %d %+v", code, rep)
	}
	problems = append(problems, Problem{Key: "mail", Part: "mail", Message: "mail failing"})
	if code, rep := get(); code != http.StatusServiceUnavailable || rep.Status != "degraded" {
		t.Fatalf("warning and a problem: %d %+v", code, rep)
	}
}
