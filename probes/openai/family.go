package openai

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/vitals-dev/vitals/probes"
)

// Family returns the OpenAI-compatible family: vLLM and any other server
// that lists its models at /v1/models. It is generic: Ollama, TGI and
// llama.cpp answer /v1/models too, so detection asks it last.
func Family() probes.Family {
	return probes.Family{
		Name:    "openai",
		Kinds:   []probes.Kind{probes.KindOpenAI, probes.KindVLLM},
		Generic: true,
		Detect:  detect,
		Probes:  kindProbes,
		Engines: []probes.EngineSignals{
			{Kind: probes.KindVLLM, Table: VLLMSignals},
			{Kind: probes.KindOpenAI, Table: SGLangSignals},
		},
	}
}

// The probe sets of the two kinds, built once: every check asks for its
// kind's.
var (
	vllmSet    = probeSet(probes.KindVLLM)
	defaultSet = probeSet(probes.KindOpenAI)
)

func kindProbes(k probes.Kind) probes.ProbeSet {
	if k == probes.KindVLLM {
		return vllmSet
	}
	return defaultSet
}

func detect(ctx context.Context, c *http.Client, baseURL string, o probes.DetectOptions) (probes.Detection, error) {
	d, err := New(c, baseURL).Detect(ctx, !o.NoTests)
	if err == nil && d.Kind == probes.KindOpenAI && o.Kind == probes.KindVLLM {
		d.Kind = probes.KindVLLM // configured as vLLM, though it does not say so
	}
	return d, err
}

func probeSet(k probes.Kind) probes.ProbeSet {
	set := probes.ProbeSet{
		Readiness: probes.ProbeFunc(func(ctx context.Context, c *http.Client, t probes.Target, _ probes.Config) (probes.Result, error) {
			return probes.Result{}, ModelsReady(ctx, New(c, t.BaseURL), t.Model)
		}),
		Operation: probes.ChatOrEmbeddings,

		PortOpensLoaded: true,
	}
	switch k {
	case probes.KindVLLM:
		set.Liveness = fetchProbe("/health")
		set.Synthetic = syntheticProbe(map[string]any{"enable_thinking": false})
		set.Signals = probes.ReadMetrics(VLLMSignals)
	default:
		// Answering is enough here; readiness decodes the model list.
		set.Liveness = fetchProbe("/v1/models")
		set.Synthetic = syntheticProbe(nil)
		// An OpenAI-compatible server with metrics of its own: SGLang, or
		// a vLLM not told apart. Most others (gateways, desktop servers)
		// have no /metrics: a 404 there says only that, and is no error.
		set.Signals = optionalSignals(probes.ReadMetrics(SGLangSignals, VLLMSignals))
	}
	return set
}

// fetchProbe is a liveness probe that GETs path and reads the answer.
func fetchProbe(path string) probes.Probe {
	return probes.ProbeFunc(func(ctx context.Context, c *http.Client, t probes.Target, _ probes.Config) (probes.Result, error) {
		return probes.Result{}, probes.Get(ctx, c, probes.JoinURL(t.BaseURL, path))
	})
}

// ModelsReady is the readiness of an OpenAI-compatible server: /v1/models
// lists a model, and model when it is not "". Either missing wraps
// probes.ErrNotReady.
func ModelsReady(ctx context.Context, oc *Client, model string) error {
	l, err := oc.Models(ctx)
	if err != nil {
		return err
	}
	if len(l.Data) == 0 {
		return fmt.Errorf("/v1/models lists no model: %w", probes.ErrNotReady)
	}
	if model != "" && !slices.ContainsFunc(l.Data, func(m ModelEntry) bool {
		return m.ID == model || slices.Contains(m.Aliases, model)
	}) {
		return fmt.Errorf("model %q not served: %w", model, probes.ErrNotReady)
	}
	return nil
}

func syntheticProbe(kwargs map[string]any) probes.Probe {
	return probes.ProbeFunc(func(ctx context.Context, c *http.Client, t probes.Target, cfg probes.Config) (probes.Result, error) {
		oc := New(c, t.BaseURL)
		switch op := probes.ChatOrEmbeddings(t); op {
		case probes.OpChat:
			model, err := chatModel(ctx, oc, t)
			if err != nil {
				return probes.Result{Operation: op, Model: model}, err
			}
			return Chat(ctx, oc, model, probes.TokenBudget(cfg), kwargs)
		case probes.OpEmbeddings:
			return Embed(ctx, oc, probes.PickModel(t, probes.CapEmbeddings))
		default:
			return probes.Result{}, fmt.Errorf("no synthetic inference for %s", t.Kind)
		}
	})
}

// chatModel is the model a chat asks for: the target's, else the one the
// server lists first, since most servers want a model they serve.
func chatModel(ctx context.Context, oc *Client, t probes.Target) (string, error) {
	if m := probes.PickModel(t, probes.CapChat); m != "" {
		return m, nil
	}
	l, err := oc.Models(ctx)
	if err != nil {
		return "", err
	}
	if len(l.Data) > 0 {
		return l.Data[0].ID, nil
	}
	return "default", nil
}

// Chat runs a synthetic chat completion: a streamed chat with model
// ("default" when empty), the prompt, budget tokens, temperature 0 and
// the chat template kwargs (nil for none). The Result has the usage, or
// one token per chunk when the server sends none, and the time to first
// token.
func Chat(ctx context.Context, oc *Client, model string, budget int, kwargs map[string]any) (probes.Result, error) {
	if model == "" {
		model = "default" // single-model servers ignore it
	}
	res := probes.Result{Operation: probes.OpChat, Model: model}
	zero := 0.0
	r, err := oc.ChatStream(ctx, ChatRequest{
		Model: model, Messages: []Message{{Role: "user", Content: probes.SyntheticPrompt}},
		MaxTokens: budget, Temperature: &zero, ChatTemplateKwargs: kwargs,
	})
	res.TimeToFirstToken, res.FinishReason = r.TimeToFirstToken, r.FinishReason
	if r.Usage != nil {
		res.PromptTokens, res.CompletionTokens = r.Usage.PromptTokens, r.Usage.CompletionTokens
	} else if r.Chunks > 0 {
		res.CompletionTokens = int64(r.Chunks) // one token per chunk, roughly
	}
	return res, err
}

// Embed runs a synthetic embedding of the prompt with model ("default"
// when empty).
func Embed(ctx context.Context, oc *Client, model string) (probes.Result, error) {
	if model == "" {
		model = "default"
	}
	res := probes.Result{Operation: probes.OpEmbeddings, Model: model}
	r, err := oc.Embeddings(ctx, EmbeddingsRequest{Model: model, Input: []string{probes.SyntheticPrompt}})
	if r.Usage != nil {
		res.PromptTokens = r.Usage.PromptTokens
	}
	return res, err
}

// optionalSignals reads signals with read, and takes a 404 for a server
// with no metrics endpoint: an error wrapping probes.ErrNoSignals, not a
// failed read.
func optionalSignals(read probes.SignalsFunc) probes.SignalsFunc {
	return func(ctx context.Context, c *http.Client, t probes.Target) (probes.Signals, error) {
		s, err := read(ctx, c, t)
		var he *probes.HTTPError
		if errors.As(err, &he) && he.Status == http.StatusNotFound {
			return probes.Signals{}, fmt.Errorf("%w: %w", probes.ErrNoSignals, err)
		}
		return s, err
	}
}
