package agent

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// textFormats are the formats textExposition writes, with each escaping
// scheme a scraper may ask for.
func textFormats() []expfmt.Format {
	var out []expfmt.Format
	for _, f := range []expfmt.Format{expfmt.FmtOpenMetrics_1_0_0, expfmt.FmtOpenMetrics_0_0_1, expfmt.FmtText} {
		for _, s := range []model.EscapingScheme{model.NoEscaping, model.UnderscoreEscaping, model.DotsEscaping, model.ValueEncodingEscaping} {
			out = append(out, f+expfmt.Format("; escaping="+s.String()))
		}
	}
	return out
}

// exemplar is an exemplar with labels, a value and a timestamp (nil ts
// for none).
func exemplar(v float64, ts *timestamppb.Timestamp, labels ...string) *dto.Exemplar {
	return &dto.Exemplar{Label: pairs(labels...), Value: proto.Float64(v), Timestamp: ts}
}

func pairs(kv ...string) []*dto.LabelPair {
	var out []*dto.LabelPair
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, &dto.LabelPair{Name: proto.String(kv[i]), Value: proto.String(kv[i+1])})
	}
	return out
}

// families are one of each kind textExposition writes itself, and of
// each it leaves to expfmt, with the values, names and texts where the
// formats differ: special floats, escapes, suffixes, exemplars.
func families() []*dto.MetricFamily {
	counter := dto.MetricType_COUNTER.Enum()
	gauge := dto.MetricType_GAUGE.Enum()
	untyped := dto.MetricType_UNTYPED.Enum()
	histogram := dto.MetricType_HISTOGRAM.Enum()
	ts := timestamppb.New(time.Unix(1700000000, 123456789))
	values := []float64{0, 1, -1, math.NaN(), math.Inf(1), math.Inf(-1), 0.1, 1e21, 1e-7, 123456789, -0.5, 3, math.Copysign(0, -1), 1.5e300}
	var gauges []*dto.Metric
	for i, v := range values {
		gauges = append(gauges, &dto.Metric{Label: pairs("i", fmt.Sprint(i)), Gauge: &dto.Gauge{Value: proto.Float64(v)}})
	}
	bucket := func(le float64, n uint64, ex *dto.Exemplar) *dto.Bucket {
		return &dto.Bucket{UpperBound: proto.Float64(le), CumulativeCount: proto.Uint64(n), Exemplar: ex}
	}
	native := func(labels []*dto.LabelPair, ex *dto.Exemplar) *dto.Metric {
		h := &dto.Histogram{SampleCount: proto.Uint64(7), SampleSum: proto.Float64(0.75), Schema: proto.Int32(3),
			ZeroThreshold: proto.Float64(1e-38), ZeroCount: proto.Uint64(0),
			PositiveSpan:  []*dto.BucketSpan{{Offset: proto.Int32(-20), Length: proto.Uint32(2)}},
			PositiveDelta: []int64{3, 1}, CreatedTimestamp: ts}
		if ex != nil {
			h.Exemplars = []*dto.Exemplar{ex}
			h.Bucket = []*dto.Bucket{bucket(math.Inf(1), 7, ex)}
		}
		return &dto.Metric{Label: labels, Histogram: h}
	}
	return []*dto.MetricFamily{
		{Name: proto.String("a_total"), Help: proto.String(`with "quotes", a \ and a` + "\nnewline"), Type: counter, Metric: []*dto.Metric{
			{Label: pairs("plugin", "x", "probe", "liveness"), Counter: &dto.Counter{Value: proto.Float64(42), CreatedTimestamp: ts}},
			{Label: pairs("plugin", `y"\`+"\n", "probe", "ready"), Counter: &dto.Counter{Value: proto.Float64(0.5), Exemplar: exemplar(1, ts, "trace_id", "abc")}},
			{Label: pairs("plugin", "z"), Counter: &dto.Counter{Value: proto.Float64(7), Exemplar: exemplar(2, nil, "trace_id", "def", "span_id", "01")}},
			{Counter: &dto.Counter{Value: proto.Float64(1), Exemplar: &dto.Exemplar{Value: proto.Float64(1)}}},
		}},
		{Name: proto.String("b_count"), Help: proto.String("A counter without _total."), Type: counter, Metric: []*dto.Metric{
			{Counter: &dto.Counter{Value: proto.Float64(3)}},
		}},
		{Name: proto.String("c"), Help: proto.String("Gauges."), Type: gauge, Metric: gauges},
		{Name: proto.String("d"), Type: untyped, Metric: []*dto.Metric{{Label: pairs("a", ""), Untyped: &dto.Untyped{Value: proto.Float64(2)}}}},
		{Name: proto.String("e_seconds"), Help: proto.String("Classic and native histograms."), Type: histogram, Metric: []*dto.Metric{
			{Label: pairs("plugin", "x"), Histogram: &dto.Histogram{SampleCount: proto.Uint64(5), SampleSum: proto.Float64(1.25), Bucket: []*dto.Bucket{
				bucket(0.1, 1, exemplar(0.05, ts, "trace_id", "t1")), bucket(1, 4, nil), bucket(2.5, 4, exemplar(2, nil, "trace_id", "t2")), bucket(math.Inf(1), 5, nil)}}},
			{Label: pairs("plugin", "y"), Histogram: &dto.Histogram{SampleCount: proto.Uint64(2), SampleSum: proto.Float64(3), Bucket: []*dto.Bucket{bucket(1, 1, nil)}}},
			native(pairs("plugin", "z"), exemplar(0.1, ts, "trace_id", "t3", "span_id", "s3")),
			native(pairs("plugin", "w"), nil),
			native(nil, nil),
		}},
		// Left to expfmt:
		{Name: proto.String("f"), Help: proto.String("A summary."), Type: dto.MetricType_SUMMARY.Enum(), Metric: []*dto.Metric{
			{Summary: &dto.Summary{SampleCount: proto.Uint64(2), SampleSum: proto.Float64(1), Quantile: []*dto.Quantile{{Quantile: proto.Float64(0.5), Value: proto.Float64(0.4)}}}},
		}},
		{Name: proto.String("g"), Type: dto.MetricType_GAUGE_HISTOGRAM.Enum(), Metric: []*dto.Metric{{Histogram: &dto.Histogram{SampleCount: proto.Uint64(1), SampleSum: proto.Float64(1)}}}},
		{Name: proto.String("h.with.dots"), Help: proto.String("A UTF-8 name."), Type: gauge, Metric: []*dto.Metric{{Label: pairs("l", "v"), Gauge: &dto.Gauge{Value: proto.Float64(1)}}}},
		{Name: proto.String("i"), Help: proto.String("A UTF-8 label name."), Type: gauge, Metric: []*dto.Metric{{Label: pairs("la.bel", "v"), Gauge: &dto.Gauge{Value: proto.Float64(1)}}}},
		{Name: proto.String("j"), Help: proto.String("__name__ as a label."), Type: gauge, Metric: []*dto.Metric{{Label: pairs("__name__", "x.y"), Gauge: &dto.Gauge{Value: proto.Float64(1)}}}},
		{Name: proto.String("k"), Help: proto.String("A timestamp."), Type: gauge, Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: proto.Float64(1)}, TimestampMs: proto.Int64(1700000000123)}}},
		{Name: proto.String("l_bytes"), Help: proto.String("A unit."), Unit: proto.String("bytes"), Type: gauge, Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: proto.Float64(1)}}}},
		{Name: proto.String("m"), Help: proto.String("A float histogram."), Type: histogram, Metric: []*dto.Metric{{Histogram: &dto.Histogram{SampleCountFloat: proto.Float64(1.5), SampleSum: proto.Float64(1)}}}},
		{Name: proto.String("n"), Help: proto.String("An exemplar's bad timestamp."), Type: counter, Metric: []*dto.Metric{
			{Counter: &dto.Counter{Value: proto.Float64(1), Exemplar: exemplar(1, &timestamppb.Timestamp{Nanos: -1}, "trace_id", "x")}}}},
		{Name: proto.String("o"), Help: proto.String("No series."), Type: gauge},
		{Name: proto.String("p"), Help: proto.String("An exemplar's UTF-8 label name."), Type: counter, Metric: []*dto.Metric{
			{Counter: &dto.Counter{Value: proto.Float64(1), Exemplar: exemplar(1, nil, "trace.id", "x")}}}},
		{Name: proto.String("q"), Help: proto.String("A series of the wrong kind."), Type: gauge, Metric: []*dto.Metric{{Counter: &dto.Counter{Value: proto.Float64(1)}}}},
	}
}

// TestTextEncoderMatchesExpfmt: each family, in every text format and
// escaping scheme, comes out byte for byte as expfmt's encoder writes it,
// errors included; and the families written by the encoder's own path
// are the ones meant to be.
func TestTextEncoderMatchesExpfmt(t *testing.T) {
	fast := 0
	for _, f := range textFormats() {
		for _, mf := range families() {
			var want bytes.Buffer
			enc := expfmt.NewEncoder(&want, f)
			wantErr := enc.Encode(mf)

			var got bytes.Buffer
			e := textEncoder{w: &got, om: f.FormatType() == expfmt.TypeOpenMetrics, scheme: f.ToEscapingScheme()}
			gotErr := e.family(mf)
			if ferr := e.flush(); gotErr == nil {
				gotErr = ferr
			}
			if (wantErr == nil) != (gotErr == nil) {
				t.Errorf("%s, %s: error %v, expfmt's %v", f, mf.GetName(), gotErr, wantErr)
			}
			if got.String() != want.String() {
				t.Errorf("%s, %s:\n got %q\nwant %q", f, mf.GetName(), got.String(), want.String())
			}
			if fastFamily(mf, e.om) {
				fast++
			}
		}
	}
	// a, b, c, d and e in each of the 12 formats; n and p in the 4 of
	// the text format too, which has no exemplars.
	if want := 5*len(textFormats()) + 2*4; fast != want {
		t.Errorf("%d families on the encoder's own path, want %d", fast, want)
	}
}

// TestTextEncoderAllocations: the encoder's own path allocates nothing a
// series (expfmt allocates a name for each histogram line).
func TestTextEncoderAllocations(t *testing.T) {
	mf := &dto.MetricFamily{Name: proto.String("x_seconds"), Help: proto.String("h"), Type: dto.MetricType_HISTOGRAM.Enum()}
	for i := range 500 {
		mf.Metric = append(mf.Metric, &dto.Metric{Label: pairs("plugin", fmt.Sprint("p", i), "probe", "liveness"),
			Histogram: &dto.Histogram{SampleCount: proto.Uint64(uint64(i)), SampleSum: proto.Float64(float64(i) / 3),
				Bucket: []*dto.Bucket{{UpperBound: proto.Float64(math.Inf(1)), CumulativeCount: proto.Uint64(uint64(i)),
					Exemplar: exemplar(0.01, timestamppb.Now(), "trace_id", "0123456789abcdef0123456789abcdef", "span_id", "0123456789abcdef")}}}})
	}
	e := textEncoder{w: io.Discard, b: make([]byte, 0, flushAt+4<<10), om: true, scheme: model.UnderscoreEscaping}
	allocs := testing.AllocsPerRun(20, func() {
		if err := e.family(mf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Errorf("%.0f allocations encoding 500 histograms, want none", allocs)
	}
}

// registry holds one of each kind of client_golang metric, with
// exemplars, native histograms and escapes, its values set once.
func registry(t *testing.T) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vitals_test_requests_total", Help: `Requests, "quoted" \ escaped.`}, []string{"plugin", "result"})
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "vitals_test_up", Help: "Up."}, []string{"plugin"})
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vitals_test_duration_seconds", Help: "Durations.",
		Buckets: []float64{.01, .1, 1}, NativeHistogramBucketFactor: 1.1}, []string{"plugin"})
	n := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "vitals_test_native_seconds", Help: "Native only.",
		NativeHistogramBucketFactor: 1.1, NativeHistogramMaxExemplars: 1})
	s := prometheus.NewSummary(prometheus.SummaryOpts{Name: "vitals_test_summary_seconds", Help: "A summary.", Objectives: map[float64]float64{0.5: 0.05}})
	reg.MustRegister(c, g, h, n, s)
	for i, p := range []string{"a", "b\n\"c\"", "d"} {
		c.WithLabelValues(p, "success").Add(float64(i) + 0.5)
		c.WithLabelValues(p, "failure")
		g.WithLabelValues(p).Set(float64(i))
		for _, v := range []float64{0.005, 0.05, 0.5, 5} {
			h.WithLabelValues(p).(prometheus.ExemplarObserver).ObserveWithExemplar(v*float64(i+1), prometheus.Labels{"trace_id": "t" + p})
			n.(prometheus.ExemplarObserver).ObserveWithExemplar(v, prometheus.Labels{"trace_id": "n"})
			s.Observe(v)
		}
	}
	return reg
}

// TestMetricsHandlerMatchesPromhttp: for every format a scraper may
// negotiate (Prometheus' own Accept headers, OpenMetrics, text, each
// protobuf encoding; gzip or not; a filter by name), /metrics answers
// with the status, headers and bytes of promhttp's handler over the same
// registry.
func TestMetricsHandlerMatchesPromhttp(t *testing.T) {
	reg := registry(t)
	ours := MetricsHandler(reg, slog.New(slog.DiscardHandler))
	theirs := compressMetrics(promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true, DisableCompression: true}))
	accepts := []string{
		// Prometheus 2.42 without and with native histograms.
		"application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
		"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.8,application/openmetrics-text;version=1.0.0;q=0.7,text/plain;version=0.0.4;q=0.5",
		// Prometheus 3's, with UTF-8 names.
		"application/openmetrics-text;version=1.0.0;escaping=allow-utf-8,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.5,*/*;q=0.1",
		"application/openmetrics-text;version=0.0.1",
		"application/openmetrics-text;version=1.0.0;escaping=dots",
		"text/plain;version=0.0.4",
		"text/plain",
		"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text",
		"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=compact-text",
		"*/*",
		"",
	}
	seen := map[string]bool{}
	for _, accept := range accepts {
		for _, gz := range []bool{false, true} {
			for _, query := range []string{"", "?name[]=vitals_test_up"} {
				name := fmt.Sprintf("%q gzip=%v %s", accept, gz, query)
				req := httptest.NewRequest(http.MethodGet, "/metrics"+query, nil)
				if accept != "" {
					req.Header.Set("Accept", accept)
				}
				if gz {
					req.Header.Set("Accept-Encoding", "gzip")
				}
				got, want := httptest.NewRecorder(), httptest.NewRecorder()
				ours.ServeHTTP(got, req)
				theirs.ServeHTTP(want, req)
				if got.Code != want.Code {
					t.Errorf("%s: status %d, promhttp's %d", name, got.Code, want.Code)
				}
				for _, h := range []string{"Content-Type", "Content-Encoding", "Vary"} {
					if g, w := got.Header().Values(h), want.Header().Values(h); fmt.Sprint(g) != fmt.Sprint(w) {
						t.Errorf("%s: %s %q, promhttp's %q", name, h, g, w)
					}
				}
				gb, wb := body(t, got), body(t, want)
				if !bytes.Equal(gb, wb) {
					t.Errorf("%s: body\n%s\npromhttp's\n%s", name, gb, wb)
				}
				if len(wb) < 100 && query == "" {
					t.Errorf("%s: only %q", name, wb)
				}
				seen[got.Header().Get("Content-Type")] = true
			}
		}
	}
	if len(seen) < 6 {
		t.Errorf("only %d formats negotiated: %v", len(seen), seen)
	}
}

// TestMetricsHandlerGatherError: a gather that fails answers 500 with
// promhttp's message, and logs it.
func TestMetricsHandlerGatherError(t *testing.T) {
	g := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return nil, errors.New("broken collector") })
	var logged bytes.Buffer
	x := &textExposition{g: g, log: log.New(&logged, "", 0)}
	w := httptest.NewRecorder()
	x.serve(w, expfmt.FmtOpenMetrics_1_0_0)
	want := httptest.NewRecorder()
	promhttp.HandlerFor(g, promhttp.HandlerOpts{DisableCompression: true}).ServeHTTP(want, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if w.Code != http.StatusInternalServerError || w.Body.String() != want.Body.String() {
		t.Errorf("%d %q, want 500 %q", w.Code, w.Body.String(), want.Body.String())
	}
	if !bytes.Contains(logged.Bytes(), []byte("broken collector")) {
		t.Errorf("logged %q", logged.String())
	}
}

func body(t *testing.T, w *httptest.ResponseRecorder) []byte {
	t.Helper()
	if w.Header().Get("Content-Encoding") != "gzip" {
		return w.Body.Bytes()
	}
	r, err := gzip.NewReader(bytes.NewReader(w.Body.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// lazyGatherer is a FamilyGatherer of gauge families f0, f1, ... of n
// series each, written as series (Text) or gathered; fail is the family
// whose gather fails, -1 for none, and order records when each family
// was gathered or written.
type lazyGatherer struct {
	families, n, fail int
	text              bool
	order             *[]string
}

func (l lazyGatherer) Describe(chan<- *prometheus.Desc) {}
func (l lazyGatherer) Collect(chan<- prometheus.Metric) {}
func (l lazyGatherer) GatherSelf() ([]*dto.MetricFamily, error) {
	return GatherAll(l.GatherFamilies())
}

func (l lazyGatherer) GatherFamilies() ([]LazyFamily, error) {
	var out []LazyFamily
	for f := range l.families {
		name := fmt.Sprintf("vitals_test_f%02d", f)
		labels := func(i int) []*dto.LabelPair {
			return []*dto.LabelPair{{Name: proto.String("plugin"), Value: proto.String(fmt.Sprintf("p%05d", i))}}
		}
		lf := LazyFamily{Name: name, Help: "A family.", Type: dto.MetricType_GAUGE}
		lf.Gather = func() (*dto.MetricFamily, []string, error) {
			*l.order = append(*l.order, "gather "+name)
			if f == l.fail {
				return nil, nil, errors.New(name + " broke")
			}
			mf := &dto.MetricFamily{Name: proto.String(name), Help: proto.String("A family."), Type: dto.MetricType_GAUGE.Enum()}
			for i := range l.n {
				mf.Metric = append(mf.Metric, &dto.Metric{Label: labels(i), Gauge: &dto.Gauge{Value: proto.Float64(float64(i))}})
			}
			return mf, nil, nil
		}
		if l.text && f != l.fail {
			lf.Text = func(w *SeriesWriter) []string {
				*l.order = append(*l.order, "text "+name)
				for i := range l.n {
					w.Value(labels(i), float64(i), nil)
					w.Next()
				}
				return nil
			}
		}
		out = append(out, lf)
	}
	return out, nil
}

// TestGatherEachOneFamilyAtATime: a FamilyGatherer's families are
// gathered as they are written, one after the other, each after the one
// before it was written; Gather gathers the same.
func TestGatherEachOneFamilyAtATime(t *testing.T) {
	var order []string
	r := NewMetricsRegistry(prometheus.NewRegistry())
	r.MustRegister(lazyGatherer{families: 3, n: 2, fail: -1, order: &order})
	if err := r.GatherEach(func(mf *dto.MetricFamily) error {
		order = append(order, "write "+mf.GetName())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := []string{"gather vitals_test_f00", "write vitals_test_f00", "gather vitals_test_f01", "write vitals_test_f01", "gather vitals_test_f02", "write vitals_test_f02"}
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Errorf("%v\nwant %v", order, want)
	}
	mfs, err := r.Gather()
	if err != nil || len(mfs) != 3 || len(mfs[2].Metric) != 2 {
		t.Errorf("Gather: %d families, %v", len(mfs), err)
	}
}

// TestMetricsHandlerFamilyError: a family that fails before anything is
// sent answers 500, as promhttp does; one that fails after 32 KiB were
// sent aborts the answer, so that the scraper sees no complete scrape
// (no # EOF, a body cut short), and is logged.
func TestMetricsHandlerFamilyError(t *testing.T) {
	for _, c := range []struct{ text, gzip bool }{{false, false}, {true, false}, {true, true}} {
		text := c.text
		var order []string
		r := NewMetricsRegistry(prometheus.NewRegistry())
		r.MustRegister(lazyGatherer{families: 2, n: 3, fail: 0, text: text, order: &order})
		w := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0")
		MetricsHandler(r, slog.New(slog.DiscardHandler)).ServeHTTP(w, req)
		if w.Code != http.StatusInternalServerError || !bytes.Contains(w.Body.Bytes(), []byte("vitals_test_f00 broke")) {
			t.Errorf("text=%v, failing first: %d %q", text, w.Code, w.Body.String())
		}

		order = nil
		r = NewMetricsRegistry(prometheus.NewRegistry())
		r.MustRegister(lazyGatherer{families: 3, n: 2000, fail: 2, text: text, order: &order})
		var logged bytes.Buffer
		srv := httptest.NewServer(MetricsHandler(r, slog.New(slog.NewTextHandler(&logged, nil))))
		req, _ = http.NewRequest(http.MethodGet, srv.URL, nil)
		req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0")
		if c.gzip {
			req.Header.Set("Accept-Encoding", "gzip")
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body := io.Reader(resp.Body)
		if c.gzip {
			if resp.Header.Get("Content-Encoding") != "gzip" {
				t.Fatalf("Content-Encoding %q", resp.Header.Get("Content-Encoding"))
			}
			if body, err = gzip.NewReader(resp.Body); err != nil {
				t.Fatal(err)
			}
		}
		b, err := io.ReadAll(body)
		resp.Body.Close()
		srv.Close()
		if err == nil || bytes.Contains(b, []byte("# EOF")) || len(b) < flushAt {
			t.Errorf("%+v, failing after %d bytes: %d, %v", c, len(b), resp.StatusCode, err)
		}
		if !bytes.Contains(logged.Bytes(), []byte("vitals_test_f02 broke")) {
			t.Errorf("text=%v: logged %q", text, logged.String())
		}
	}
}
