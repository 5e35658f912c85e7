package probes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Engine names the software an AI server runs, as its own metrics name it.
// It is finer than Kind: SGLang speaks the OpenAI API (KindOpenAI) and
// Triton the KServe v2 protocol (KindKServe).
type Engine string

// The engines whose signals Vitals reads.
const (
	EngineUnknown  Engine = ""
	EngineVLLM     Engine = "vllm"
	EngineSGLang   Engine = "sglang"
	EngineLlamaCpp Engine = "llamacpp"
	EngineTGI      Engine = "tgi"
	EngineTEI      Engine = "tei"
	EngineTriton   Engine = "triton"
	EngineOllama   Engine = "ollama"
)

// Field is one signal of Signals, or a set of them (the bits or-ed).
type Field uint16

// The signals. Each is a bit of Signals.Reported.
const (
	FieldRequestsRunning Field = 1 << iota
	FieldRequestsWaiting
	FieldKVCacheUsage
	FieldGeneratedTokens
	FieldRequests
	FieldLoadedModels
	FieldSlots
	FieldAsleep
)

var fieldNames = []string{"requests_running", "requests_waiting", "kv_cache_usage", "generated_tokens", "requests", "loaded_models", "slots", "asleep"}

// String names the fields of f, joined by "|"; "none" for none.
func (f Field) String() string {
	var names []string
	for i, n := range fieldNames {
		if f&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, "|")
}

// RequestResult is how a server says a request ended, bounded so it can be
// a metric label (vitals_ai_server_requests_total{result}).
type RequestResult string

// The request results.
const (
	// RequestSuccess is a request the server finished (vLLM stop or
	// length, Triton success).
	RequestSuccess RequestResult = "success"
	// RequestFailure is one the server failed or refused (validation,
	// overload, a backend error).
	RequestFailure RequestResult = "failure"
	// RequestCanceled is one its client or the scheduler gave up on (vLLM
	// abort, Triton CANCELED, SGLang aborted).
	RequestCanceled RequestResult = "canceled"
)

// Signals is what an engine says about its own load, normalized across
// engines: the requests it is running and queueing, how full its KV cache
// is, the counters of tokens it generated and requests it ended, the
// models it holds, its slots and whether it sleeps. Reported says which fields the engine
// gave, so a field it does not report is told apart from a zero.
type Signals struct {
	// Engine is the engine the signals were read from.
	Engine Engine
	// Reported is the set of fields the engine gave.
	Reported Field
	// RequestsRunning is the number of requests being processed now.
	RequestsRunning float64
	// RequestsWaiting is the number of requests queued, not yet running.
	RequestsWaiting float64
	// KVCacheUsage is the fraction of the KV cache in use, 0 to 1; with
	// several caches (data-parallel engines) the fullest one's.
	KVCacheUsage float64
	// GeneratedTokens is the server's counter of tokens generated since it
	// started. It only goes up, until the server restarts.
	GeneratedTokens float64
	// Requests are the server's counters of requests ended, by result.
	Requests map[RequestResult]float64
	// LoadedModels are the models the server holds in memory now.
	LoadedModels []LoadedModel
	// SlotsBusy and SlotsIdle count the server's slots (llama.cpp /slots)
	// by whether they process a request.
	SlotsBusy, SlotsIdle int
	// Asleep is how many of the server's engines are asleep (vLLM's sleep
	// mode, weights offloaded or discarded); 0 when all are awake.
	Asleep float64
}

// LoadedModel is one model a server holds in memory. Zero fields are ones
// the server did not give.
type LoadedModel struct {
	// Name is the model's name as clients ask for it.
	Name string
	// SizeBytes is the memory the loaded model takes, in all devices.
	SizeBytes int64
	// VRAMBytes is the part of SizeBytes in GPU memory.
	VRAMBytes int64
	// ContextLength is the context window it was loaded with, in tokens.
	ContextLength int64
	// Digest is the model's digest as the server lists it (Ollama
	// /api/ps: its manifest's), with or without its "sha256:" prefix.
	Digest string
	// BlobDigest is the digest of the model's weights blob, the file a
	// runner process is started with (Ollama: the FROM line of /api/show's
	// modelfile), as "sha256:<hex>"; "" when unknown.
	BlobDigest string
	// ExpiresAt is when the server unloads it unless it is used again;
	// zero when the server did not say.
	ExpiresAt time.Time
}

// Has reports whether the engine reported every field of f.
func (s Signals) Has(f Field) bool { return f != 0 && s.Reported&f == f }

// Merge returns s with the fields that o reports and s does not taken from
// o: how the signals of one server's /metrics, /slots and model list are
// put together. Engine is s's unless s has none.
func (s Signals) Merge(o Signals) Signals {
	if s.Engine == EngineUnknown {
		s.Engine = o.Engine
	}
	take := o.Reported &^ s.Reported
	if take&FieldRequestsRunning != 0 {
		s.RequestsRunning = o.RequestsRunning
	}
	if take&FieldRequestsWaiting != 0 {
		s.RequestsWaiting = o.RequestsWaiting
	}
	if take&FieldKVCacheUsage != 0 {
		s.KVCacheUsage = o.KVCacheUsage
	}
	if take&FieldGeneratedTokens != 0 {
		s.GeneratedTokens = o.GeneratedTokens
	}
	if take&FieldRequests != 0 {
		s.Requests = o.Requests
	}
	if take&FieldLoadedModels != 0 {
		s.LoadedModels = o.LoadedModels
	}
	if take&FieldSlots != 0 {
		s.SlotsBusy, s.SlotsIdle = o.SlotsBusy, o.SlotsIdle
	}
	if take&FieldAsleep != 0 {
		s.Asleep = o.Asleep
	}
	s.Reported |= take
	return s
}

// Source is one series of an engine's /metrics that a signal is read from.
type Source struct {
	// Names are the names the engine has given the series, newest first.
	// The first name the body holds is read and the others are not, so a
	// server that exposes an old and a new name side by side while one is
	// deprecated is counted once.
	Names []string
	// Match keeps only the samples whose labels have these values
	// (request_type="active"); nil keeps all.
	Match map[string]string
	// Scale multiplies every value read (0.01 for a percentage); 0 means 1.
	Scale float64
}

// RequestSource is a series of ended requests and how its samples map to
// request results.
type RequestSource struct {
	Source
	// Result is the result of every sample, unless ResultLabel maps it to
	// another.
	Result RequestResult
	// ResultLabel names the label whose value, looked up in Results, gives
	// a sample's result (vLLM's finished_reason); values not in Results
	// keep Result.
	ResultLabel string
	Results     map[string]RequestResult
}

// SignalTable maps one engine's /metrics to Signals. A signal may come
// from several sources: their values add up (Triton's requests pending in
// its core and in a TensorRT-LLM backend's own queue), except for
// KVCacheUsage, whose sources give the largest. Within a source, the
// values of all its label sets (models, data-parallel engines) add up the
// same way. A histogram or summary gives its sum (TGI's generated tokens
// per request); a NaN or infinite sample is skipped.
//
// A gauge signal is reported when at least one of its samples is in the
// body. A counter signal (GeneratedTokens, Requests) is reported as soon
// as the body declares one of its families, even with no sample yet:
// Python's client declares a labelled counter before its first increment,
// and a counter that has not counted is zero.
type SignalTable struct {
	// Engine names the engine, and the document in errors.
	Engine Engine
	// Prefixes are the metric name prefixes only this engine writes
	// ("vllm:", "tgi_"): Fingerprint tells the engine of a /metrics body
	// by them.
	Prefixes []string
	// Hosts marks an engine that runs other engines as its backends and
	// exposes their series beside its own (Triton's vLLM backend): a body
	// with one of its prefixes is its, however many of theirs it holds.
	Hosts bool

	Running         []Source
	Waiting         []Source
	KVCacheUsage    []Source
	GeneratedTokens []Source
	Requests        []RequestSource
	// Asleep counts the engines asleep (a gauge).
	Asleep []Source
}

// MaxMetricsBytes bounds a /metrics body that Decode, FetchMetrics and
// Fingerprint read; the benchmark's vLLM with eight data-parallel engines
// and a dozen histograms writes 440 KiB.
const MaxMetricsBytes = 4 << 20

// Decode reads a Prometheus text exposition body (format 0.0.4, which
// every engine here writes) and returns the signals t finds in it. Only
// the lines of the families t names are parsed: the rest of the body (an
// engine's histograms, a Python process's own series) costs one scan, and
// a line there the parser would refuse does not hide the signals. A body
// larger than MaxMetricsBytes, or a line of t's families the parser
// refuses, is a *DecodeError that names the engine's /metrics and, for a
// parse error, the line of body. Decode does not change t; it is safe for
// concurrent use.
func (t SignalTable) Decode(body []byte) (Signals, error) {
	what := t.what()
	if len(body) > MaxMetricsBytes {
		return Signals{}, &DecodeError{What: what, Err: fmt.Errorf("%w: body of %d bytes, larger than %d", ErrTooLarge, len(body), MaxMetricsBytes)}
	}
	kept, lines, declared := t.keep(body)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(kept))
	if err != nil {
		var pe expfmt.ParseError
		if errors.As(err, &pe) {
			line := pe.Line
			if line >= 1 && line <= len(lines) {
				line = lines[line-1]
			}
			return Signals{}, &DecodeError{What: what, Err: fmt.Errorf("line %d: %s", line, pe.Msg)}
		}
		return Signals{}, &DecodeError{What: what, Err: err}
	}
	return t.signals(fams, declared), nil
}

// signals reads t's signals from parsed families and the names of the
// families with a TYPE line.
func (t SignalTable) signals(fams map[string]*dto.MetricFamily, declared map[string]bool) Signals {
	s := Signals{Engine: t.Engine}
	if v, ok := readAll(fams, nil, t.Running, sum); ok {
		s.RequestsRunning, s.Reported = v, s.Reported|FieldRequestsRunning
	}
	if v, ok := readAll(fams, nil, t.Waiting, sum); ok {
		s.RequestsWaiting, s.Reported = v, s.Reported|FieldRequestsWaiting
	}
	if v, ok := readAll(fams, nil, t.KVCacheUsage, math.Max); ok {
		s.KVCacheUsage, s.Reported = v, s.Reported|FieldKVCacheUsage
	}
	if v, ok := readAll(fams, declared, t.GeneratedTokens, sum); ok {
		s.GeneratedTokens, s.Reported = v, s.Reported|FieldGeneratedTokens
	}
	if v, ok := readAll(fams, nil, t.Asleep, sum); ok {
		s.Asleep, s.Reported = v, s.Reported|FieldAsleep
	}
	for _, rs := range t.Requests {
		mf, ok := rs.family(fams, declared)
		if !ok {
			continue
		}
		if s.Requests == nil {
			s.Requests = map[RequestResult]float64{}
		}
		s.Reported |= FieldRequests
		for _, m := range mf.GetMetric() {
			if v, ok := rs.value(m); ok {
				s.Requests[rs.result(m)] += v
			}
		}
	}
	return s
}

func (t SignalTable) what() string {
	e := string(t.Engine)
	if e == "" {
		e = "unknown engine"
	}
	return e + " /metrics"
}

func sum(a, b float64) float64 { return a + b }

// readAll combines the values of srcs with op. A gauge (declared nil) is
// reported when one of its samples matched, a counter as soon as its
// family is in the body, declared or with samples.
func readAll(fams map[string]*dto.MetricFamily, declared map[string]bool, srcs []Source, op func(a, b float64) float64) (float64, bool) {
	var total float64
	found := false
	for _, src := range srcs {
		mf, ok := src.family(fams, declared)
		if !ok {
			continue
		}
		if declared != nil {
			found = true
		}
		for _, m := range mf.GetMetric() {
			v, ok := src.value(m)
			if !ok {
				continue
			}
			if !found {
				total, found = v, true
				continue
			}
			total = op(total, v)
		}
	}
	return total, found
}

// family returns the family of the first of src.Names that fams holds, or
// that declared names (its family then has no samples, and may be nil).
func (src Source) family(fams map[string]*dto.MetricFamily, declared map[string]bool) (*dto.MetricFamily, bool) {
	for _, n := range src.Names {
		if mf, ok := fams[n]; ok {
			return mf, true
		}
		if declared[n] {
			return nil, true
		}
	}
	return nil, false
}

// keep returns the lines of body that belong to a family t names (its
// HELP and TYPE lines and its samples, a histogram's or summary's
// suffixed ones too), the line number in body of each line kept, and the
// families t names that have a TYPE line: the parser drops a family
// without samples, and a counter's still counts (see SignalTable).
func (t SignalTable) keep(body []byte) (kept []byte, lines []int, declared map[string]bool) {
	want := map[string]bool{}
	for _, srcs := range [][]Source{t.Running, t.Waiting, t.KVCacheUsage, t.GeneratedTokens, t.Asleep} {
		for _, src := range srcs {
			for _, n := range src.Names {
				want[n] = true
			}
		}
	}
	for _, rs := range t.Requests {
		for _, n := range rs.Names {
			want[n] = true
		}
	}
	declared = map[string]bool{}
	for n := 1; len(body) > 0; n++ {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i+1], body[i+1:]
		} else {
			body = nil
		}
		name, base, typ := lineFamily(line)
		if !want[string(name)] && !want[string(base)] {
			continue
		}
		if typ {
			declared[string(name)] = true
		}
		kept = append(kept, line...)
		if line[len(line)-1] != '\n' {
			kept = append(kept, '\n')
		}
		lines = append(lines, n)
	}
	return kept, lines, declared
}

// lineFamily names the family a line of the text format belongs to: the
// name of a HELP or TYPE line (typ true for TYPE), or the metric name of a
// sample line and, when that ends in _bucket, _sum or _count, base, the
// name without it (the histogram or summary it may be part of). Other
// lines, and samples whose name is quoted, have none. The names are
// slices of line.
func lineFamily(line []byte) (name, base []byte, typ bool) {
	line = bytes.TrimLeft(line, " \t")
	if len(line) == 0 || line[0] == '{' {
		return nil, nil, false
	}
	if line[0] == '#' {
		rest := bytes.TrimLeft(line[1:], " \t")
		switch {
		case bytes.HasPrefix(rest, []byte("TYPE")):
			typ = true
		case !bytes.HasPrefix(rest, []byte("HELP")):
			return nil, nil, false
		}
		rest = rest[4:]
		if len(rest) == 0 || (rest[0] != ' ' && rest[0] != '\t') {
			return nil, nil, false
		}
		rest = bytes.TrimLeft(rest, " \t")
		if end := bytes.IndexAny(rest, " \t\r\n"); end >= 0 {
			rest = rest[:end]
		}
		return rest, nil, typ && len(rest) > 0
	}
	end := bytes.IndexAny(line, "{ \t\r\n")
	if end < 0 {
		end = len(line)
	}
	name = line[:end]
	for _, suf := range [][]byte{[]byte("_bucket"), []byte("_sum"), []byte("_count")} {
		if b, ok := bytes.CutSuffix(name, suf); ok && len(b) > 0 {
			return name, b, false
		}
	}
	return name, nil, false
}

// value is m's value scaled, if m matches src and has a finite value.
func (src Source) value(m *dto.Metric) (float64, bool) {
	for k, want := range src.Match {
		if label(m, k) != want {
			return 0, false
		}
	}
	var v float64
	switch {
	case m.GetCounter() != nil:
		v = m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		v = m.GetGauge().GetValue()
	case m.GetUntyped() != nil:
		v = m.GetUntyped().GetValue()
	case m.GetHistogram() != nil:
		v = m.GetHistogram().GetSampleSum()
	case m.GetSummary() != nil:
		v = m.GetSummary().GetSampleSum()
	default:
		return 0, false
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false
	}
	if src.Scale != 0 {
		v *= src.Scale
	}
	return v, true
}

func (rs RequestSource) result(m *dto.Metric) RequestResult {
	if rs.ResultLabel != "" {
		if r, ok := rs.Results[label(m, rs.ResultLabel)]; ok {
			return r
		}
	}
	return rs.Result
}

func label(m *dto.Metric, name string) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}

// FetchMetrics GETs url (a server's /metrics; Triton serves it on its own
// port, 8002 by default) through Do, asking for the text format, and
// returns the body of a 2xx answer, at most MaxMetricsBytes of it. Errors
// are those of Fetch. client nil means http.DefaultClient.
func FetchMetrics(ctx context.Context, client *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	req.Header = acceptMetrics
	return readOK(client, req, url, MaxMetricsBytes)
}

// Fingerprint tells which of tables' engines wrote a /metrics body from
// the prefixes of its metric names (SignalTable.Prefixes): the engine of
// a Hosts table whenever the body has one of its families, else the one
// with the most families, the first of tables on a tie; EngineUnknown
// when none has any. It reads names from TYPE, HELP and sample lines
// without parsing values, so a body the parser would refuse still has a
// fingerprint, and reads at most the first MaxMetricsBytes. The registry's
// Fingerprint is this over every family's tables.
func Fingerprint(body []byte, tables ...SignalTable) Engine {
	if i := fingerprint(body, tables); i >= 0 {
		return tables[i].Engine
	}
	return EngineUnknown
}

// fingerprint is Fingerprint's table, its index in tables; -1 for none.
func fingerprint(body []byte, tables []SignalTable) int {
	body = body[:min(len(body), MaxMetricsBytes)]
	seen := map[string]bool{}
	counts := make([]int, len(tables))
	for len(body) > 0 {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		name, base, _ := lineFamily(line)
		if base != nil {
			name = base
		}
		if len(name) == 0 || seen[string(name)] {
			continue
		}
		seen[string(name)] = true
		if i := owner(name, tables); i >= 0 {
			counts[i]++
		}
	}
	best := -1
	for i, n := range counts {
		switch {
		case n == 0:
		case tables[i].Hosts:
			return i
		case best < 0 || n > counts[best]:
			best = i
		}
	}
	return best
}

// owner is the index of the table one of whose prefixes name has, -1 for
// none.
func owner(name []byte, tables []SignalTable) int {
	for i, t := range tables {
		for _, p := range t.Prefixes {
			if bytes.HasPrefix(name, []byte(p)) {
				return i
			}
		}
	}
	return -1
}
