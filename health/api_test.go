package health_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/vitals-dev/vitals/health"
)

// Every history query parameter is bounded and checked: a bad one is a 400
// that names it, never a query over everything.
func TestHistoryQueryIsValidated(t *testing.T) {
	e := health.New(health.Options{Config: health.DefaultConfig()})
	h := health.Handlers{Engine: e, Known: func(id string) bool { return id == "llm" }}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/admin/ai-plugins/{id}/history", h.History)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for _, tc := range []struct {
		query, param string
	}{
		{"since=1e300", "since"},
		{"since=-1e300", "since"},
		{"since=NaN", "since"},
		{"since=Inf", "since"},
		{"until=1e19", "until"},
		{"since=2562047h", "since"},
		{"since=-5m", "since"},
		{"since=yesterday", "since"},
		{"since=0001-01-01T00:00:00Z", "since"},
		{"since=2h&until=3h", "until"},
		{"limit=0", "limit"},
		{"limit=99999999999999999999", "limit"},
		{"limit=1&limit=2", "limit"},
		{"sinse=1h", "sinse"},
		{"since=" + strings.Repeat("1", 300), "since"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			resp, err := http.Get(srv.URL + "/api/v1/admin/ai-plugins/llm/history?" + tc.query)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Error     string `json:"error"`
				Parameter string `json:"parameter"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&body)
			if resp.StatusCode != 400 || body.Parameter != tc.param || !strings.Contains(body.Error, tc.param) {
				t.Fatalf("%d %+v, want 400 naming %s", resp.StatusCode, body, tc.param)
			}
		})
	}
	for _, q := range []string{"", "since=1h", "since=1700000000.5&until=2026-01-01T00:00:00Z", "limit=10000", "since=" + url.QueryEscape("2025-01-01T00:00:00+02:00")} {
		resp, err := http.Get(srv.URL + "/api/v1/admin/ai-plugins/llm/history?" + q)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%q: %d, want 200", q, resp.StatusCode)
		}
	}
}
