package probes

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Kind is the protocol family an AI server speaks.
type Kind string

// The kinds Vitals knows. KindAuto is not a server kind: it asks detection
// to find out.
const (
	KindAuto     Kind = "auto"
	KindOpenAI   Kind = "openai"
	KindLlamaCpp Kind = "llamacpp"
	KindVLLM     Kind = "vllm"
	KindOllama   Kind = "ollama"
	KindTGI      Kind = "tgi"
	KindTEI      Kind = "tei"
	KindKServe   Kind = "kserve"
	KindUnknown  Kind = "unknown"
)

// Kinds returns every concrete server kind, in a stable order. It leaves out
// KindAuto and KindUnknown.
func Kinds() []Kind {
	return []Kind{KindOpenAI, KindLlamaCpp, KindVLLM, KindOllama, KindTGI, KindTEI, KindKServe}
}

// ParseKind returns the Kind named by s (case-insensitive, surrounding space
// ignored). The empty string is KindAuto.
func ParseKind(s string) (Kind, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return KindAuto, nil
	}
	k := Kind(s)
	if k == KindAuto || k == KindUnknown || slices.Contains(Kinds(), k) {
		return k, nil
	}
	return "", fmt.Errorf("unknown kind %q (want auto, %s)", s, joinKinds(Kinds()))
}

func joinKinds(ks []Kind) string {
	ss := make([]string, len(ks))
	for i, k := range ks {
		ss[i] = string(k)
	}
	return strings.Join(ss, ", ")
}

// String returns the kind's name.
func (k Kind) String() string { return string(k) }

// Capability is one thing an AI server or model can do.
type Capability string

// The capabilities Vitals classifies.
const (
	CapChat           Capability = "chat"
	CapCompletion     Capability = "completion"
	CapEmbeddings     Capability = "embeddings"
	CapRerank         Capability = "rerank"
	CapClassification Capability = "classification"
	CapVision         Capability = "vision"
	CapTools          Capability = "tools"
)

// Capabilities returns every capability, in a stable order.
func Capabilities() []Capability {
	return []Capability{CapChat, CapCompletion, CapEmbeddings, CapRerank, CapClassification, CapVision, CapTools}
}

// String returns the capability's name.
func (c Capability) String() string { return string(c) }

// SortCapabilities sorts cs in the order of Capabilities() and removes
// duplicates, in place, and returns the result.
func SortCapabilities(cs []Capability) []Capability {
	rank := func(c Capability) int {
		if i := slices.Index(Capabilities(), c); i >= 0 {
			return i
		}
		return len(Capabilities())
	}
	slices.SortFunc(cs, func(a, b Capability) int {
		if d := rank(a) - rank(b); d != 0 {
			return d
		}
		return strings.Compare(string(a), string(b))
	})
	return slices.Compact(cs)
}

// Model describes one model an AI server offers. Zero numeric fields mean
// the server did not say.
type Model struct {
	// ID is the name clients send in requests ("tiny", "llama3:8b").
	ID string `json:"id"`
	// Capabilities are what this model can do.
	Capabilities []Capability `json:"capabilities,omitempty"`
	// ContextLength is the context window in tokens.
	ContextLength int64 `json:"context_length,omitempty"`
	// SizeBytes is the model's size on disk.
	SizeBytes int64 `json:"size_bytes,omitempty"`
	// MemoryBytes is the memory the loaded model uses (Ollama /api/ps).
	MemoryBytes int64 `json:"memory_bytes,omitempty"`
	// Loaded reports whether the server says the model is loaded and ready;
	// it is only meaningful where the server says so.
	Loaded bool `json:"loaded,omitempty"`
}

// Has reports whether the model has capability c.
func (m Model) Has(c Capability) bool { return slices.Contains(m.Capabilities, c) }

// Detection is what capability detection found out about an endpoint.
type Detection struct {
	// Kind is the server kind, KindUnknown when detection could not tell.
	Kind Kind `json:"kind"`
	// Server names the software when the server says ("llama.cpp",
	// "text-generation-router", "triton").
	Server string `json:"server,omitempty"`
	// Version is the server's version string, when it reports one.
	Version string `json:"version,omitempty"`
	// Capabilities is the union of the models' capabilities, sorted.
	Capabilities []Capability `json:"capabilities,omitempty"`
	// Models are the models the server offers.
	Models []Model `json:"models,omitempty"`
	// Reason says, for a human, why the kind is unknown.
	Reason string `json:"reason,omitempty"`
	// Attempts is how many detection rounds it took.
	Attempts int `json:"attempts,omitempty"`
	// FromMetrics is set when the kind was told from the prefixes of the
	// server's metric names, not by its API.
	FromMetrics bool `json:"from_metrics,omitempty"`
}

// Has reports whether the endpoint has capability c.
func (d Detection) Has(c Capability) bool { return slices.Contains(d.Capabilities, c) }

// Finish fills Capabilities with the sorted union of the models'
// capabilities and extra, and returns d.
func (d Detection) Finish(extra ...Capability) Detection {
	caps := slices.Clone(extra)
	for _, m := range d.Models {
		caps = append(caps, m.Capabilities...)
	}
	caps = append(caps, d.Capabilities...)
	d.Capabilities = SortCapabilities(caps)
	return d
}

// Target is what a probe looks at.
type Target struct {
	// ID names the AI plugin; it is what metrics and logs call it.
	ID string
	// BaseURL is the server's root, e.g. "http://127.0.0.1:11434".
	BaseURL string
	// MetricsURL is where the server's Prometheus metrics are, when not
	// at BaseURL's /metrics (Triton's own metrics port); "" for the
	// family's default.
	MetricsURL string
	// Kind is the server kind, KindAuto when not known yet.
	Kind Kind
	// Model is the model a synthetic inference uses, when it needs one.
	Model string
	// Models are the models detection found; readiness and synthetic
	// inference pick from them when Model is empty.
	Models []Model
	// Capabilities are what the server can do; synthetic inference picks
	// its operation from them.
	Capabilities []Capability
	// PID is the server's process on this host, 0 when not known.
	PID int
}

// Config holds the settings of one probe run.
type Config struct {
	// Timeout bounds the probe when ctx has no earlier deadline. Zero means
	// ctx alone bounds it.
	Timeout time.Duration
	// MaxTokens is the token budget of a synthetic inference.
	MaxTokens int
}

// Result is the outcome of one probe run. A failed probe still returns a
// Result (with its timing and Class) together with its error.
type Result struct {
	// Start is when the probe started.
	Start time.Time
	// Duration is how long it took.
	Duration time.Duration
	// Class is the error class, empty on success.
	Class ErrorClass
	// Version is the server version the probe saw, if any.
	Version string
	// TimeToFirstToken is set by streaming synthetic inference.
	TimeToFirstToken time.Duration
	// PromptTokens and CompletionTokens are the usage a synthetic inference
	// reported.
	PromptTokens, CompletionTokens int64
	// FinishReason is why the synthetic answer ended, as the server says
	// ("stop", "length": cut at the token budget, which is a good answer).
	FinishReason string
	// Operation is what a synthetic inference did ("chat", "embeddings",
	// "rerank", "text_completion", "infer"), and Model the model it used.
	Operation, Model string
	// Process is what a resource probe read of a local process; nil when
	// it had none to read.
	Process *ProcessStats
	// ModelProcesses are the server's runner children, by model (Ollama);
	// nil when it has none or they were not read.
	ModelProcesses []ModelProcess
}

// ProcessStats is what the resource probe reads of a local process.
type ProcessStats struct {
	PID              int
	CPUSeconds       float64
	ResidentBytes    int64
	StartTimeSeconds float64
}

// ModelMemory is the memory a loaded model uses.
type ModelMemory struct {
	TotalBytes int64
	VRAMBytes  int64
}

// OutputTokensPerSecond is the generation throughput of a synthetic
// inference: completion tokens over the time after the first token (over the
// whole duration when there was no first-token time), or 0 when unknown or
// when the answer has fewer than MinRateTokens tokens, too few to time.
func (r Result) OutputTokensPerSecond() float64 {
	if r.CompletionTokens < MinRateTokens {
		return 0
	}
	d := r.Duration - r.TimeToFirstToken
	if r.TimeToFirstToken <= 0 || d <= 0 || r.CompletionTokens == 1 {
		d = r.Duration
	}
	if d <= 0 {
		return 0
	}
	n := r.CompletionTokens
	if r.TimeToFirstToken > 0 && r.CompletionTokens > 1 && d != r.Duration {
		n-- // the first token is counted in the time to first token
	}
	return float64(n) / d.Seconds()
}

// Probe is one check of one target. It must honour ctx (its deadline and
// cancellation), must not keep goroutines running after it returns, and
// reports failure through its error, never through a bare bool.
type Probe interface {
	Probe(ctx context.Context, client *http.Client, target Target, cfg Config) (Result, error)
}

// ProbeFunc adapts a function to Probe.
type ProbeFunc func(ctx context.Context, client *http.Client, target Target, cfg Config) (Result, error)

// Probe calls f.
func (f ProbeFunc) Probe(ctx context.Context, client *http.Client, target Target, cfg Config) (Result, error) {
	return f(ctx, client, target, cfg)
}

// Run runs p against target with cfg.Timeout applied, and fills in the
// Result's Start, Duration and Class. now is the clock (time.Now when nil).
func Run(ctx context.Context, p Probe, client *http.Client, target Target, cfg Config, now func() time.Time) (Result, error) {
	if now == nil {
		now = time.Now
	}
	if cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
	}
	start := now()
	res, err := p.Probe(ctx, client, target, cfg)
	res.Start = start
	res.Duration = now().Sub(start)
	res.Class = Classify(err)
	if err != nil {
		return res, fmt.Errorf("probe %s: %w", target.ID, err)
	}
	return res, nil
}
