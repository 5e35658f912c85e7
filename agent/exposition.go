package agent

import (
	"bytes"
	"errors"
	"io"
	"log"
	"math"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// textExposition serves a gather in the two text formats Prometheus
// scrapes without native histograms, OpenMetrics 1.0.0 (and 0.0.1) and
// the text format 0.0.4, byte for byte as promhttp and expfmt write them
// (exposition_test.go compares the two for every kind of family and every
// escaping scheme), but cheaper per series: each line is appended to one
// buffer rather than written a call at a time through a bufio.Writer, the
// metric name is checked once a family and the label names once a series
// (a histogram's series is many lines), not once a line, and
// a label value is escaped only when it holds a character to escape.
// Families it has no fast path for (summaries, gauge histograms, names
// that need escaping, timestamps, units, float histograms) go through
// expfmt itself. promhttp serves every other format and request.
type textExposition struct {
	g   prometheus.Gatherer
	log *log.Logger
}

// serves reports whether the negotiated format f of r is one this
// exposition writes.
func (x *textExposition) serves(f expfmt.Format, r *http.Request) bool {
	if r.URL != nil && r.URL.RawQuery != "" && len(r.URL.Query()["name[]"]) > 0 {
		return false // promhttp's filter by name
	}
	switch f.FormatType() {
	case expfmt.TypeTextPlain:
		return true
	case expfmt.TypeOpenMetrics:
		_, params, err := mime.ParseMediaType(string(f))
		return err == nil && (params["version"] == expfmt.OpenMetricsVersion_1_0_0 || params["version"] == expfmt.OpenMetricsVersion_0_0_1)
	}
	return false
}

// flushAt is the size of the buffer past which it is written out.
const flushAt = 32 << 10

var textBuffers = sync.Pool{New: func() any { b := make([]byte, 0, flushAt+4<<10); return &b }}

// serve answers r in the format f as promhttp.HandlerFor does with its
// default options (HTTPErrorOnError, no compression of its own). From a
// MetricsRegistry it writes each family as it is gathered (or, one that
// writes its own series, without gathering it):
// an error known before the first 32 KiB are sent is a 500 as from
// promhttp; one after that aborts the answer, so that the scraper sees a
// failed scrape rather than a short one.
func (x *textExposition) serve(w http.ResponseWriter, f expfmt.Format) {
	bp := textBuffers.Get().(*[]byte)
	e := textEncoder{w: w, b: (*bp)[:0], om: f.FormatType() == expfmt.TypeOpenMetrics, scheme: f.ToEscapingScheme()}
	defer func() {
		if cap(e.b) <= 4*flushAt {
			*bp = e.b[:0]
			textBuffers.Put(bp)
		}
	}()
	w.Header().Add("Vary", "Accept")
	w.Header().Set("Content-Type", string(f))
	var err error
	if r, ok := x.g.(*MetricsRegistry); ok {
		err = r.writeText(&e)
	} else {
		var mfs []*dto.MetricFamily
		if mfs, err = x.g.Gather(); err == nil {
			for _, mf := range mfs {
				if err = e.family(mf); err != nil {
					err = &encodeError{err}
					break
				}
			}
		}
	}
	if ee, ok := errors.AsType[*encodeError](err); ok {
		x.log.Println("error encoding and sending metric family:", ee.err)
		return
	}
	if err != nil {
		x.log.Println("error gathering metrics:", err)
		if e.sent > 0 {
			panic(http.ErrAbortHandler)
		}
		// Nothing sent: promhttp's answer, without this format's headers.
		h := w.Header()
		h.Del("Content-Encoding")
		if vary := slices.DeleteFunc(h["Vary"], func(v string) bool { return v == "Accept" }); len(vary) > 0 {
			h["Vary"] = vary
		} else {
			h.Del("Vary")
		}
		http.Error(w, "An error has occurred while serving metrics:\n\n"+err.Error(), http.StatusInternalServerError)
		return
	}
	if e.om {
		e.b = append(e.b, "# EOF\n"...)
	}
	if err := e.flush(); err != nil {
		x.log.Println("error encoding and sending metric family:", err)
	}
}

// encodeError is an error of writing the answer, not of gathering it.
type encodeError struct{ err error }

func (e *encodeError) Error() string { return e.err.Error() }

// textEncoder appends families to b and writes b to w as it fills.
type textEncoder struct {
	w      io.Writer
	b      []byte
	om     bool
	scheme model.EscapingScheme
	sent   int // bytes written to w
}

func (e *textEncoder) flush() error {
	if len(e.b) == 0 {
		return nil
	}
	n, err := e.w.Write(e.b)
	e.sent += n
	e.b = e.b[:0]
	return err
}

// family encodes mf, through expfmt when it has no fast path.
func (e *textEncoder) family(mf *dto.MetricFamily) error {
	if !fastFamily(mf, e.om) {
		// expfmt writes the family, or the part of it before an error,
		// as promhttp would send it.
		var err error
		aw := appendWriter{&e.b}
		if e.om {
			_, err = expfmt.MetricFamilyToOpenMetrics(aw, model.EscapeMetricFamily(mf, e.scheme))
		} else {
			_, err = expfmt.MetricFamilyToText(aw, model.EscapeMetricFamily(mf, e.scheme))
		}
		if ferr := e.flush(); err == nil {
			err = ferr
		}
		return err
	}
	name, typ := mf.GetName(), mf.GetType()
	e.header(name, mf.Help, typ)
	for _, m := range mf.Metric {
		switch typ {
		case dto.MetricType_COUNTER:
			e.sample(name, "", m.Label, false, 0, m.Counter.GetValue(), 0, false, m.Counter.Exemplar)
		case dto.MetricType_GAUGE:
			e.sample(name, "", m.Label, false, 0, m.Gauge.GetValue(), 0, false, nil)
		case dto.MetricType_UNTYPED:
			e.sample(name, "", m.Label, false, 0, m.Untyped.GetValue(), 0, false, nil)
		case dto.MetricType_HISTOGRAM:
			h := m.Histogram
			inf := false
			for _, b := range h.Bucket {
				e.sample(name, "_bucket", m.Label, true, b.GetUpperBound(), 0, b.GetCumulativeCount(), true, b.Exemplar)
				inf = inf || math.IsInf(b.GetUpperBound(), +1)
			}
			if !inf {
				e.sample(name, "_bucket", m.Label, true, math.Inf(+1), 0, h.GetSampleCount(), true, nil)
			}
			e.sample(name, "_sum", m.Label, false, 0, h.GetSampleSum(), 0, false, nil)
			e.sample(name, "_count", m.Label, false, 0, 0, h.GetSampleCount(), true, nil)
		}
		if len(e.b) >= flushAt {
			if err := e.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// header appends the HELP (when help is not nil) and TYPE lines of the
// family name of type typ.
func (e *textEncoder) header(name string, help *string, typ dto.MetricType) {
	// The name in HELP and TYPE: OpenMetrics names a counter's family
	// without its _total, and has no counter without one.
	family, kind := name, ""
	switch typ {
	case dto.MetricType_COUNTER:
		kind = " counter\n"
		if e.om {
			if strings.HasSuffix(name, "_total") {
				family = name[:len(name)-len("_total")]
			} else {
				kind = " unknown\n"
			}
		}
	case dto.MetricType_GAUGE:
		kind = " gauge\n"
	case dto.MetricType_UNTYPED:
		kind = " untyped\n"
		if e.om {
			kind = " unknown\n"
		}
	case dto.MetricType_HISTOGRAM:
		kind = " histogram\n"
	}
	if help != nil {
		e.b = append(e.b, "# HELP "...)
		e.b = append(e.b, family...)
		e.b = append(e.b, ' ')
		e.b = appendEscaped(e.b, *help, e.om)
		e.b = append(e.b, '\n')
	}
	e.b = append(e.b, "# TYPE "...)
	e.b = append(e.b, family...)
	e.b = append(e.b, kind...)
}

// A SeriesWriter appends the series of one family to a text exposition
// (LazyFamily.Text), line by line as the exposition writes a gathered
// family's, so that the family is written without a message a series.
// Its header is written with its first series; a family with none is not
// written at all.
type SeriesWriter struct {
	e       *textEncoder
	name    string
	help    string
	typ     dto.MetricType
	started bool
	err     error // of writing out the exposition; nothing is written after it
}

func (w *SeriesWriter) start() bool {
	if w.err != nil {
		return false
	}
	if !w.started {
		w.e.header(w.name, &w.help, w.typ)
		w.started = true
	}
	return true
}

// Value writes a counter's, gauge's or untyped series' sample, with the
// exemplar ex (nil for none; written for a counter in OpenMetrics).
func (w *SeriesWriter) Value(labels []*dto.LabelPair, v float64, ex *dto.Exemplar) {
	if !w.start() {
		return
	}
	if w.typ != dto.MetricType_COUNTER {
		ex = nil
	}
	w.e.sample(w.name, "", labels, false, 0, v, 0, false, ex)
}

// Bucket writes a histogram series' bucket of upper bound le and
// cumulative count n, with the exemplar ex (nil for none). A histogram's
// buckets end with +Inf's.
func (w *SeriesWriter) Bucket(labels []*dto.LabelPair, le float64, n uint64, ex *dto.Exemplar) {
	if w.start() {
		w.e.sample(w.name, "_bucket", labels, true, le, 0, n, true, ex)
	}
}

// SumCount writes a histogram series' sum and count, after its buckets:
// the end of the series.
func (w *SeriesWriter) SumCount(labels []*dto.LabelPair, sum float64, count uint64) {
	if w.start() {
		w.e.sample(w.name, "_sum", labels, false, 0, sum, 0, false, nil)
		w.e.sample(w.name, "_count", labels, false, 0, 0, count, true, nil)
	}
}

// Next ends a series: the exposition is written out as its buffer fills.
// A series' lines are all written before Next, so that a writer holding
// a lock while it writes them does not wait on the scraper.
func (w *SeriesWriter) Next() {
	if w.err == nil && len(w.e.b) >= flushAt {
		w.err = w.e.flush()
	}
}

// sample appends one line: name and suffix, the labels (and le, the
// bucket's bound, when bucket), the value (u when integer, which the text
// format writes as a float) and, in OpenMetrics, the exemplar.
func (e *textEncoder) sample(name, suffix string, labels []*dto.LabelPair, bucket bool, le, v float64, u uint64, integer bool, ex *dto.Exemplar) {
	b := append(e.b, name...)
	b = append(b, suffix...)
	if len(labels) > 0 || bucket {
		b = appendLabels(b, labels, '{')
		if bucket {
			if len(labels) > 0 {
				b = append(b, ',')
			} else {
				b = append(b, '{')
			}
			b = append(b, `le="`...)
			b = e.float(b, le)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	b = append(b, ' ')
	switch {
	case integer && e.om:
		b = strconv.AppendUint(b, u, 10)
	case integer:
		b = e.float(b, float64(u))
	default:
		b = e.float(b, v)
	}
	if e.om && ex != nil && len(ex.Label) > 0 {
		b = append(b, " # "...)
		b = appendLabels(b, ex.Label, '{')
		b = append(b, "} "...)
		b = e.float(b, ex.GetValue())
		if ex.Timestamp != nil {
			b = append(b, ' ')
			b = e.float(b, float64(ex.Timestamp.AsTime().UnixNano())/1e9)
		}
	}
	e.b = append(b, '\n')
}

// appendLabels appends the pairs as name="value", separated by commas,
// the first after open (when there is one); not the closing brace.
func appendLabels(b []byte, labels []*dto.LabelPair, open byte) []byte {
	sep := open
	for _, lp := range labels {
		b = append(b, sep)
		b = append(b, lp.GetName()...)
		b = append(b, `="`...)
		b = appendEscaped(b, lp.GetValue(), true)
		b = append(b, '"')
		sep = ','
	}
	return b
}

// float appends f as expfmt writes a value in the encoder's format.
func (e *textEncoder) float(b []byte, f float64) []byte {
	switch {
	case f == 1:
		if e.om {
			return append(b, "1.0"...)
		}
		return append(b, '1')
	case f == 0:
		if e.om {
			return append(b, "0.0"...)
		}
		return append(b, '0')
	case f == -1:
		if e.om {
			return append(b, "-1.0"...)
		}
		return append(b, "-1"...)
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, +1):
		return append(b, "+Inf"...)
	case math.IsInf(f, -1):
		return append(b, "-Inf"...)
	}
	n := len(b)
	b = strconv.AppendFloat(b, f, 'g', -1, 64)
	if e.om && !bytes.ContainsAny(b[n:], "e.") {
		b = append(b, ".0"...)
	}
	return b
}

// appendEscaped appends s with backslashes and newlines escaped, and
// double quotes when quote is set, as expfmt escapes label values and
// help texts.
func appendEscaped(b []byte, s string, quote bool) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch c := s[i]; {
		case c == '\\':
			esc = `\\`
		case c == '\n':
			esc = `\n`
		case c == '"' && quote:
			esc = `\"`
		default:
			continue
		}
		b = append(b, s[start:i]...)
		b = append(b, esc...)
		start = i + 1
	}
	return append(b, s[start:]...)
}

// fastFamily reports whether the encoder's own path writes mf as expfmt
// would: a counter, gauge, untyped or histogram family of names that need
// no escaping or quoting (so that every escaping scheme leaves them as
// they are), with no timestamps, unit, float histogram counts or invalid
// exemplar timestamps, where expfmt would quote, escape or fail.
func fastFamily(mf *dto.MetricFamily, om bool) bool {
	if len(mf.Metric) == 0 || mf.Unit != nil || !model.LegacyValidation.IsValidMetricName(mf.GetName()) {
		return false
	}
	labels := func(ls []*dto.LabelPair) bool {
		for _, lp := range ls {
			if lp.GetName() == model.MetricNameLabel || !model.LegacyValidation.IsValidLabelName(lp.GetName()) {
				return false
			}
		}
		return true
	}
	exemplar := func(ex *dto.Exemplar) bool {
		if ex == nil || !om {
			return true
		}
		return labels(ex.Label) && (ex.Timestamp == nil || ex.Timestamp.CheckValid() == nil)
	}
	typ := mf.GetType()
	for _, m := range mf.Metric {
		if m.TimestampMs != nil || !labels(m.Label) {
			return false
		}
		switch typ {
		case dto.MetricType_COUNTER:
			if m.Counter == nil || !exemplar(m.Counter.Exemplar) {
				return false
			}
		case dto.MetricType_GAUGE:
			if m.Gauge == nil {
				return false
			}
		case dto.MetricType_UNTYPED:
			if m.Untyped == nil {
				return false
			}
		case dto.MetricType_HISTOGRAM:
			h := m.Histogram
			if h == nil || h.GetSampleCountFloat() != 0 {
				return false
			}
			for _, b := range h.Bucket {
				if b.GetCumulativeCountFloat() != 0 || !exemplar(b.Exemplar) {
					return false
				}
			}
		default:
			return false
		}
	}
	return true
}

// appendWriter appends to a byte slice; expfmt writes to it directly, as
// to a bufio.Writer.
type appendWriter struct{ b *[]byte }

func (w appendWriter) Write(p []byte) (int, error) { *w.b = append(*w.b, p...); return len(p), nil }
func (w appendWriter) WriteString(s string) (int, error) {
	*w.b = append(*w.b, s...)
	return len(s), nil
}
func (w appendWriter) WriteByte(c byte) error { *w.b = append(*w.b, c); return nil }
func (w appendWriter) WriteRune(r rune) (int, error) {
	n := len(*w.b)
	*w.b = utf8.AppendRune(*w.b, r)
	return len(*w.b) - n, nil
}
