package probes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
)

// Probe names, used as the probe label of metrics and in history.
const (
	Liveness  = "liveness"
	Readiness = "readiness"
	Synthetic = "synthetic"
	Resources = "resources"
)

// Synthetic operations, named as the OpenTelemetry GenAI conventions name
// them (gen_ai.operation.name), plus "rerank" and "infer".
const (
	OpChat       = "chat"
	OpCompletion = "text_completion"
	OpEmbeddings = "embeddings"
	OpRerank     = "rerank"
	OpInfer      = "infer"
)

// DefaultMaxTokens is the token budget of a synthetic inference when the
// config gives none; MaxSyntheticTokens caps any budget. Two tokens prove
// a model generates; the cap leaves room for a model (or a gateway) that
// refuses a budget under its minimum, such as OpenAI's 16 output tokens.
const (
	DefaultMaxTokens   = 2
	MaxSyntheticTokens = 32
)

// SyntheticPrompt is the input of every synthetic inference: short, so the
// prompt costs next to nothing.
const SyntheticPrompt = "Say ok."

// TokenBudget is the token budget of a synthetic inference under cfg:
// cfg.MaxTokens, DefaultMaxTokens when unset, at most MaxSyntheticTokens.
func TokenBudget(cfg Config) int {
	b := cfg.MaxTokens
	if b <= 0 {
		b = DefaultMaxTokens
	}
	return min(b, MaxSyntheticTokens)
}

// SignalsFunc reads what an engine says about its own load: its /metrics,
// with the family's SignalTable, and its status endpoints (llama.cpp's
// /slots, Ollama's /api/ps).
type SignalsFunc func(ctx context.Context, client *http.Client, t Target) (Signals, error)

// ProbeSet is what the health engine runs against one kind of server, in
// this order: Liveness, then Readiness, then Synthetic, each only when the
// one before passed, then the resource probe. Every kind of a Family has
// one; nil fields are probes the kind does not have.
type ProbeSet struct {
	// Liveness is the cheapest request that proves the process answers. It
	// is never nil.
	Liveness Probe
	// Readiness checks that the server can serve: models loaded, the
	// configured model there.
	Readiness Probe
	// Operation names the synthetic inference Synthetic runs against t (an
	// Op constant), or "" when there is none it can run for t (a
	// classifier, say). It is nil when Synthetic is.
	Operation func(t Target) string
	// Synthetic runs one tiny inference, Operation(t), within the token
	// budget of TokenBudget.
	Synthetic Probe
	// Signals reads the engine's own signals: its load, and the models it
	// holds with their memory. The health engine reads them on every
	// check.
	Signals SignalsFunc
	// PortOpensLoaded marks a server that opens its port only once its
	// model is loaded (vLLM, SGLang, TGI, TEI, Triton): a connection
	// refused while its process runs is a load in progress, not an
	// outage. llama.cpp and Ollama listen while they load.
	PortOpensLoaded bool
}

// SyntheticOp returns the operation the set's synthetic inference runs
// against t, "" when it has none.
func (s ProbeSet) SyntheticOp(t Target) string {
	if s.Synthetic == nil || s.Operation == nil {
		return ""
	}
	return s.Operation(t)
}

// Family is one engine family: the server kinds one package knows, how
// detection asks an endpoint whether it is one of them, and the probe set
// of each. A family package exports one function returning its Family; the
// list of families is probes/engines.
type Family struct {
	// Name is the family's name, its package's ("ollama", "hf").
	Name string
	// Kinds are the server kinds the family owns; no two families share
	// one.
	Kinds []Kind
	// Generic marks a family whose question other servers answer too (any
	// OpenAI-compatible server lists /v1/models). Detection settles for a
	// generic family's answer only when no more specific family failed in
	// a way worth retrying.
	Generic bool
	// Detect asks the endpoint at baseURL whether it is one of the
	// family's kinds. It returns a Detection of one of Kinds; an error
	// wrapping ErrNoMatch when the endpoint does not speak the family's
	// protocol; or the transport's error (a timeout, a reset, a 5xx) for
	// the caller to retry. When o.Kind names one of the family's kinds,
	// the family may take an answer that does not say which kind it is for
	// that kind.
	Detect func(ctx context.Context, client *http.Client, baseURL string, o DetectOptions) (Detection, error)
	// Probes returns the probe set of kind k, one of Kinds.
	Probes func(k Kind) ProbeSet
	// Engines are the engines the family's kinds run whose /metrics a
	// SignalTable reads, each with its kind. Detection fingerprints a
	// server its API questions did not identify (or found only
	// OpenAI-compatible) by the prefixes of every family's tables.
	Engines []EngineSignals
}

// EngineSignals is one engine a family's kind runs and the table its
// /metrics is read with.
type EngineSignals struct {
	// Kind is the kind of a server of the engine, one of the family's
	// Kinds: the kind detection gives a server whose /metrics Table's
	// prefixes fingerprint.
	Kind  Kind
	Table SignalTable
}

// Registry maps server kinds to the families that own them. Build it with
// NewRegistry; it is immutable and safe for concurrent use.
type Registry struct {
	families []Family
	byKind   map[Kind]int
	engines  []EngineSignals // every family's, in the families' order
	tables   []SignalTable   // engines' tables, in the same order
}

// NewRegistry returns a registry of fams, in the order detection asks
// them. A family without a name, kinds, Detect or Probes, a name or a kind
// given twice, a kind that is not in Kinds(), or a kind whose probe set
// has no liveness probe is an error; so is an engine of a kind not the
// family's, one without an Engine name or Prefixes, and an engine or a
// prefix given twice.
func NewRegistry(fams ...Family) (*Registry, error) {
	r := &Registry{byKind: map[Kind]int{}}
	names := map[string]bool{}
	engines := map[Engine]bool{}
	prefixes := map[string]Engine{}
	var errs []error
	for i, f := range fams {
		switch {
		case f.Name == "":
			errs = append(errs, fmt.Errorf("family %d has no name", i))
			continue
		case names[f.Name]:
			errs = append(errs, fmt.Errorf("family %q registered twice", f.Name))
			continue
		case len(f.Kinds) == 0 || f.Detect == nil || f.Probes == nil:
			errs = append(errs, fmt.Errorf("family %q: needs kinds, Detect and Probes", f.Name))
			continue
		}
		names[f.Name] = true
		for _, k := range f.Kinds {
			if j, ok := r.byKind[k]; ok {
				errs = append(errs, fmt.Errorf("family %q: kind %s is already family %q's", f.Name, k, fams[j].Name))
				continue
			}
			if !slices.Contains(Kinds(), k) {
				errs = append(errs, fmt.Errorf("family %q: kind %q is not a probes.Kind", f.Name, k))
				continue
			}
			if f.Probes(k).Liveness == nil {
				errs = append(errs, fmt.Errorf("family %q: kind %s has no liveness probe", f.Name, k))
				continue
			}
			r.byKind[k] = i
		}
		for _, es := range f.Engines {
			e := es.Table.Engine
			switch {
			case !slices.Contains(f.Kinds, es.Kind):
				errs = append(errs, fmt.Errorf("family %q: engine %q is of kind %q, not the family's", f.Name, e, es.Kind))
				continue
			case e == EngineUnknown || len(es.Table.Prefixes) == 0:
				errs = append(errs, fmt.Errorf("family %q: an engine of kind %s needs an Engine name and Prefixes", f.Name, es.Kind))
				continue
			case engines[e]:
				errs = append(errs, fmt.Errorf("family %q: engine %q registered twice", f.Name, e))
				continue
			}
			for _, p := range es.Table.Prefixes {
				if o, ok := prefixes[p]; ok {
					errs = append(errs, fmt.Errorf("family %q: engine %q: prefix %q is already engine %q's", f.Name, e, p, o))
				} else if p == "" {
					errs = append(errs, fmt.Errorf("family %q: engine %q has an empty prefix", f.Name, e))
				}
				prefixes[p] = e
			}
			engines[e] = true
			r.engines = append(r.engines, es)
			r.tables = append(r.tables, es.Table)
		}
		r.families = append(r.families, f)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return r, nil
}

// Family returns the family that owns kind k.
func (r *Registry) Family(k Kind) (Family, bool) {
	i, ok := r.byKind[k]
	if !ok {
		return Family{}, false
	}
	return r.families[i], true
}

// Engines returns every family's engines, in the order detection asks
// the families.
func (r *Registry) Engines() []EngineSignals { return slices.Clone(r.engines) }

// Fingerprint tells which registered engine wrote a /metrics body, by the
// prefixes of every family's tables (see the package's Fingerprint), and
// returns it with its kind; false when the body has no known prefix.
func (r *Registry) Fingerprint(body []byte) (EngineSignals, bool) {
	if i := fingerprint(body, r.tables); i >= 0 {
		return r.engines[i], true
	}
	return EngineSignals{}, false
}

// Prefixes returns every registered engine's metric name prefixes, in
// the registry's order.
func (r *Registry) Prefixes() []string {
	return prefixesOf(r.tables)
}

// Probes returns the probe set of kind k. A kind no family owns (KindAuto,
// KindUnknown) gets only a liveness probe that any HTTP answer below 500
// but 401 and 403 passes, since the right path is not known. That proves
// the process answers, not that it serves: the health engine keeps such
// a target unknown until its kind is identified.
func (r *Registry) Probes(k Kind) ProbeSet {
	if f, ok := r.Family(k); ok {
		return f.Probes(k)
	}
	return ProbeSet{Liveness: ProbeFunc(answers)}
}

// answers checks that something speaks HTTP at the target's base URL: any
// status below 500 will do, but 401 and 403 (ClassAuth: the server wants
// credentials the agent does not have). The body is read to its end (at most
// MaxBodyBytes) within ctx, so a server that sends its headers and then
// drips its body fails on time like one that never answers.
func answers(ctx context.Context, c *http.Client, t Target, _ Config) (Result, error) {
	base := t.BaseURL
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base, nil)
	if err != nil {
		return Result{}, fmt.Errorf("GET %s: %w", base, err)
	}
	resp, err := Do(c, req, MaxBodyBytes)
	if err != nil {
		return Result{}, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return Result{}, fmt.Errorf("GET %s: read body: %w", base, err)
	}
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return Result{}, &HTTPError{Method: http.MethodGet, URL: base, Status: resp.StatusCode}
	}
	return Result{}, nil
}

// ProcessProbe returns the resource probe: it reads the target's process
// with proc, and has nothing to read for a target without a PID. The
// engine's own signals are read apart, by the probe set's Signals.
func ProcessProbe(proc func(pid int) (ProcessStats, error)) Probe {
	return ProbeFunc(func(_ context.Context, _ *http.Client, t Target, _ Config) (Result, error) {
		if t.PID <= 0 {
			return Result{}, nil
		}
		ps, err := proc(t.PID)
		if err != nil {
			return Result{}, err
		}
		return Result{Process: &ps}, nil
	})
}

// ReadMetrics returns a SignalsFunc that reads the target's metrics (its
// MetricsURL, else its base URL's /metrics) with the table of the engine
// that wrote them: with one table that one, with several the one
// Fingerprint picks among them. A body none of their engines wrote is a
// *DecodeError.
func ReadMetrics(tables ...SignalTable) SignalsFunc {
	return func(ctx context.Context, c *http.Client, t Target) (Signals, error) {
		u := t.MetricsURL
		if u == "" {
			u = JoinURL(t.BaseURL, "/metrics")
		}
		b, err := FetchMetrics(ctx, c, u)
		if err != nil {
			return Signals{}, err
		}
		if len(tables) == 1 {
			return tables[0].Decode(b)
		}
		if i := fingerprint(b, tables); i >= 0 {
			return tables[i].Decode(b)
		}
		return Signals{}, &DecodeError{What: u, Err: fmt.Errorf("series of no engine this kind runs (no name starts with %s)", strings.Join(prefixesOf(tables), ", "))}
	}
}

// prefixesOf is the prefixes of tables, in order.
func prefixesOf(tables []SignalTable) []string {
	var ps []string
	for _, t := range tables {
		ps = append(ps, t.Prefixes...)
	}
	return ps
}

// NotReadyOn503 marks a 503 of a readiness endpoint as not ready: the
// error then wraps ErrNotReady too, and ErrLoading when the body says the
// model is loading (llama.cpp's "Loading model").
func NotReadyOn503(err error) error {
	var he *HTTPError
	if errors.As(err, &he) && he.Status == http.StatusServiceUnavailable {
		if strings.Contains(he.Body, "Loading model") {
			return fmt.Errorf("%w: %w", ErrLoading, err)
		}
		return fmt.Errorf("%w: %w", ErrNotReady, err)
	}
	return err
}

// PickModel returns the model for an operation needing capability c (""
// for any): the target's model, else the first detected model with c, else
// the first model, else "".
func PickModel(t Target, c Capability) string {
	if t.Model != "" {
		return t.Model
	}
	for _, m := range t.Models {
		if c == "" || m.Has(c) {
			return m.ID
		}
	}
	if len(t.Models) > 0 {
		return t.Models[0].ID
	}
	return ""
}

// Has reports whether the target, or one of its models, has capability c.
func (t Target) Has(c Capability) bool {
	return slices.Contains(t.Capabilities, c) || slices.ContainsFunc(t.Models, func(m Model) bool { return m.Has(c) })
}

// ChatOrEmbeddings is the synthetic operation of a server that chats and
// embeds (OpenAI-compatible servers, llama.cpp, Ollama): a chat when the
// target chats, an embedding when it only embeds, a chat when it completes
// text, when nothing is known of it yet, or when its capabilities are
// unknown and it names the model to use; "" otherwise (a reranker, a
// classifier, models whose capabilities nobody knows).
func ChatOrEmbeddings(t Target) string {
	known := len(t.Capabilities) > 0 || slices.ContainsFunc(t.Models, func(m Model) bool { return len(m.Capabilities) > 0 })
	switch {
	case t.Has(CapChat):
		return OpChat
	case t.Has(CapEmbeddings):
		return OpEmbeddings
	case t.Has(CapCompletion), len(t.Models) == 0 && !known, t.Model != "" && !known:
		return OpChat
	}
	return ""
}

// ChatOrEmbeddingsFor is ChatOrEmbeddings with the capability a model needs
// for the operation (CapChat, or CapEmbeddings), and an error naming the
// kind when there is no operation.
func ChatOrEmbeddingsFor(t Target) (op string, need Capability, err error) {
	switch op = ChatOrEmbeddings(t); op {
	case "":
		return "", "", fmt.Errorf("no synthetic inference for %s", t.Kind)
	case OpEmbeddings:
		return op, CapEmbeddings, nil
	}
	return op, CapChat, nil
}
