package agenttest

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/vitals-dev/vitals/agent"
)

// GathersAsRegistry fails t unless s's GatherSelf returns what reg, a
// registry holding s alone, gathers: the same families in the same order,
// each equal to its counterpart as a message. It returns how many
// families there are.
func GathersAsRegistry(t testing.TB, reg prometheus.Gatherer, s agent.SelfGatherer) int {
	t.Helper()
	want, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.GatherSelf()
	if err != nil {
		t.Fatal(err)
	}
	if g, w := familyNames(got), familyNames(want); !slices.Equal(g, w) {
		t.Fatalf("families\n%v\nwant\n%v", g, w)
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("%s:\n%v\nwant\n%v", want[i].GetName(), got[i], want[i])
		}
	}
	return len(want)
}

func familyNames(mfs []*dto.MetricFamily) (out []string) {
	for _, mf := range mfs {
		out = append(out, fmt.Sprintf("%s:%d", mf.GetName(), len(mf.GetMetric())))
	}
	return out
}

// DropsInvalid checks that s, holding a series with a label value that is
// not UTF-8, fails its GatherSelf as a registry fails its Gather, and
// leaves that series out; it returns the families gathered.
func DropsInvalid(t testing.TB, s agent.SelfGatherer) []*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(s)
	if _, err := reg.Gather(); err == nil {
		t.Fatal("the registry took it")
	}
	mfs, err := s.GatherSelf()
	if err == nil || !strings.Contains(err.Error(), "not UTF-8") {
		t.Errorf("error %v", err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if !utf8.ValidString(l.GetValue()) {
					t.Errorf("%s gathered with %q", mf.GetName(), l.GetValue())
				}
			}
		}
	}
	return mfs
}

// ExposesAsGathered fails t unless /metrics over a MetricsRegistry holding
// s alone (agent.MetricsHandler, which writes a FamilyGatherer's families
// without gathering them where it can) answers each text format a
// scraper negotiates with the bytes promhttp writes of s's GatherSelf.
func ExposesAsGathered(t testing.TB, s agent.SelfGatherer) {
	t.Helper()
	r := agent.NewMetricsRegistry(prometheus.NewRegistry())
	r.MustRegister(s)
	ours := agent.MetricsHandler(r, slog.New(slog.DiscardHandler))
	theirs := promhttp.HandlerFor(prometheus.GathererFunc(s.GatherSelf), promhttp.HandlerOpts{EnableOpenMetrics: true, DisableCompression: true})
	for _, accept := range []string{
		"application/openmetrics-text;version=1.0.0",
		"application/openmetrics-text;version=0.0.1",
		"application/openmetrics-text;version=1.0.0;escaping=dots",
		"text/plain;version=0.0.4",
		"",
	} {
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		req.Header.Set("Accept", accept)
		got, want := httptest.NewRecorder(), httptest.NewRecorder()
		ours.ServeHTTP(got, req)
		theirs.ServeHTTP(want, req)
		if got.Code != want.Code || got.Header().Get("Content-Type") != want.Header().Get("Content-Type") {
			t.Errorf("%q: %d %s, promhttp's %d %s", accept, got.Code, got.Header().Get("Content-Type"), want.Code, want.Header().Get("Content-Type"))
		}
		if !bytes.Equal(got.Body.Bytes(), want.Body.Bytes()) {
			t.Errorf("%q: body\n%s\npromhttp's\n%s", accept, got.Body.Bytes(), want.Body.Bytes())
		}
		if want.Body.Len() < 200 {
			t.Errorf("%q: only %q", accept, want.Body.Bytes())
		}
	}
}
