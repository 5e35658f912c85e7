package check

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/hf"
	"github.com/vitals-dev/vitals/probes/kserve"
	"github.com/vitals-dev/vitals/probes/ollama"
	"github.com/vitals-dev/vitals/probes/openai"
)

// Probe names, used as the probe label of metrics and in history.
const (
	Liveness  = "liveness"
	Readiness = "readiness"
	Synthetic = "synthetic"
	Resources = "resources"
)

// DefaultMaxTokens is the token budget of a synthetic inference when the
// config gives none.
const DefaultMaxTokens = 2

// Synthetic operations, named as the OpenTelemetry GenAI conventions name
// them (gen_ai.operation.name), plus "rerank" and "infer".
const (
	OpChat       = "chat"
	OpCompletion = "text_completion"
	OpEmbeddings = "embeddings"
	OpRerank     = "rerank"
	OpInfer      = "infer"
)

// prompt is the synthetic inference's input: short, so the prompt costs
// next to nothing.
const prompt = "Say ok."

// LivenessProbe returns the liveness probe of kind k.
func LivenessProbe(k probes.Kind) probes.Probe {
	return probes.ProbeFunc(func(ctx context.Context, c *http.Client, t probes.Target, _ probes.Config) (probes.Result, error) {
		var res probes.Result
		switch k {
		case probes.KindLlamaCpp:
			_, err := openai.New(c, t.BaseURL).Health(ctx)
			var he *probes.HTTPError
			if errors.As(err, &he) && he.Status == http.StatusServiceUnavailable {
				return res, nil // loading its model: alive, not ready
			}
			return res, err
		case probes.KindVLLM:
			_, err := probes.Fetch(ctx, c, http.MethodGet, probes.JoinURL(t.BaseURL, "/health"), nil)
			return res, err
		case probes.KindOpenAI:
			// Answering is enough here; readiness decodes the model list.
			_, err := probes.Fetch(ctx, c, http.MethodGet, probes.JoinURL(t.BaseURL, "/v1/models"), nil)
			return res, err
		case probes.KindOllama:
			v, err := ollama.New(c, t.BaseURL).Version(ctx)
			res.Version = v
			return res, err
		case probes.KindTGI, probes.KindTEI:
			return res, hf.New(c, t.BaseURL).Health(ctx)
		case probes.KindKServe:
			return res, kserve.New(c, t.BaseURL).Live(ctx)
		}
		return res, answers(ctx, c, t.BaseURL)
	})
}

// answers checks that something speaks HTTP at base: any status below 500
// will do, since the kind, and so the right path, is not known. The body
// is read to its end (at most probes.MaxBodyBytes) within ctx, so a server
// that sends its headers and then drips its body fails on time like one
// that never answers.
func answers(ctx context.Context, c *http.Client, base string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", base, err)
	}
	resp, err := probes.Do(c, req, probes.MaxBodyBytes)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return fmt.Errorf("GET %s: read body: %w", base, err)
	}
	if resp.StatusCode >= 500 {
		return &probes.HTTPError{Method: http.MethodGet, URL: base, Status: resp.StatusCode}
	}
	return nil
}

// ReadinessProbe returns the readiness probe of kind k. Servers of unknown
// kind have none: it returns nil.
func ReadinessProbe(k probes.Kind) probes.Probe {
	switch k {
	case probes.KindOpenAI, probes.KindLlamaCpp, probes.KindVLLM, probes.KindOllama,
		probes.KindTGI, probes.KindTEI, probes.KindKServe:
	default:
		return nil
	}
	return probes.ProbeFunc(func(ctx context.Context, c *http.Client, t probes.Target, _ probes.Config) (probes.Result, error) {
		var res probes.Result
		switch k {
		case probes.KindOpenAI, probes.KindLlamaCpp, probes.KindVLLM:
			oc := openai.New(c, t.BaseURL)
			if k == probes.KindLlamaCpp {
				if _, err := oc.Health(ctx); err != nil {
					return res, notReadyOn503(err)
				}
			}
			l, err := oc.Models(ctx)
			if err != nil {
				return res, err
			}
			if len(l.Data) == 0 {
				return res, fmt.Errorf("/v1/models lists no model: %w", probes.ErrNotReady)
			}
			// llama.cpp serves its one model whatever the name.
			if t.Model != "" && k != probes.KindLlamaCpp && !slices.ContainsFunc(l.Data, func(m openai.ModelEntry) bool {
				return m.ID == t.Model || slices.Contains(m.Aliases, t.Model)
			}) {
				return res, fmt.Errorf("model %q not served: %w", t.Model, probes.ErrNotReady)
			}
			return res, nil
		case probes.KindOllama:
			tags, err := ollama.New(c, t.BaseURL).Tags(ctx)
			if err != nil {
				return res, err
			}
			if len(tags) == 0 {
				return res, fmt.Errorf("/api/tags lists no model: %w", probes.ErrNotReady)
			}
			if t.Model != "" && !slices.ContainsFunc(tags, func(m ollama.TagModel) bool { return sameOllamaModel(m.Name, t.Model) }) {
				return res, fmt.Errorf("model %q not pulled: %w", t.Model, probes.ErrNotReady)
			}
			return res, nil
		case probes.KindTGI, probes.KindTEI:
			info, err := hf.New(c, t.BaseURL).Info(ctx)
			if err != nil {
				return res, err
			}
			res.Version = info.Version
			if info.ModelID == "" {
				return res, fmt.Errorf("/info names no model: %w", probes.ErrNotReady)
			}
			return res, nil
		default: // kserve
			kc := kserve.New(c, t.BaseURL)
			if err := kc.Ready(ctx); err != nil {
				return res, notReadyOn503(err)
			}
			if m := pickModel(t, ""); m != "" {
				if err := kc.ModelReady(ctx, m); err != nil {
					return res, notReadyOn503(err)
				}
			}
			return res, nil
		}
	})
}

// notReadyOn503 marks a 503 of a readiness endpoint as not ready.
func notReadyOn503(err error) error {
	var he *probes.HTTPError
	if errors.As(err, &he) && he.Status == http.StatusServiceUnavailable {
		return fmt.Errorf("%w: %w", probes.ErrNotReady, err)
	}
	return err
}

func sameOllamaModel(a, b string) bool {
	norm := func(s string) string {
		if !strings.Contains(s, ":") {
			return s + ":latest"
		}
		return s
	}
	return norm(a) == norm(b)
}

// pickModel returns the model for an operation needing capability c ("" for
// any): the target's model, else the first detected model with c, else the
// first model.
func pickModel(t probes.Target, c probes.Capability) string {
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

// Operation returns the synthetic inference kind k runs for t, or "" when
// there is none it can run (a classifier, a server of unknown kind).
func Operation(k probes.Kind, t probes.Target) string {
	has := func(c probes.Capability) bool {
		if slices.Contains(t.Capabilities, c) {
			return true
		}
		return slices.ContainsFunc(t.Models, func(m probes.Model) bool { return m.Has(c) })
	}
	switch k {
	case probes.KindOpenAI, probes.KindLlamaCpp, probes.KindVLLM, probes.KindOllama:
		switch {
		case has(probes.CapChat):
			return OpChat
		case has(probes.CapEmbeddings):
			return OpEmbeddings
		case has(probes.CapCompletion), len(t.Capabilities) == 0 && len(t.Models) == 0:
			return OpChat
		}
	case probes.KindTGI:
		return OpCompletion
	case probes.KindTEI:
		switch {
		case has(probes.CapEmbeddings):
			return OpEmbeddings
		case has(probes.CapRerank):
			return OpRerank
		}
	case probes.KindKServe:
		if pickModel(t, "") != "" {
			return OpInfer
		}
	}
	return ""
}

// SyntheticProbe returns the synthetic inference probe of kind k. It runs
// Operation(k, target); a target with no operation is an error.
func SyntheticProbe(k probes.Kind) probes.Probe {
	return probes.ProbeFunc(func(ctx context.Context, c *http.Client, t probes.Target, cfg probes.Config) (probes.Result, error) {
		op := Operation(k, t)
		res := probes.Result{Operation: op}
		budget := cfg.MaxTokens
		if budget <= 0 {
			budget = DefaultMaxTokens
		}
		budget = min(budget, 4)
		switch {
		case op == "":
			return res, fmt.Errorf("no synthetic inference for kind %s", k)
		case op == OpChat && k == probes.KindOllama:
			return ollamaChat(ctx, c, t, budget, res)
		case op == OpChat:
			return openaiChat(ctx, c, k, t, budget, res)
		case op == OpEmbeddings && k == probes.KindOllama:
			res.Model = pickModel(t, probes.CapEmbeddings)
			r, err := ollama.New(c, t.BaseURL).Embed(ctx, ollama.EmbedRequest{Model: res.Model, Input: []string{prompt}})
			res.PromptTokens = r.PromptEvalCount
			return res, err
		case op == OpEmbeddings && k == probes.KindTEI:
			res.Model = pickModel(t, probes.CapEmbeddings)
			_, err := hf.New(c, t.BaseURL).Embed(ctx, []string{prompt})
			return res, err
		case op == OpEmbeddings:
			res.Model = pickModel(t, probes.CapEmbeddings)
			if res.Model == "" {
				res.Model = "default"
			}
			r, err := openai.New(c, t.BaseURL).Embeddings(ctx, openai.EmbeddingsRequest{Model: res.Model, Input: []string{prompt}})
			if r.Usage != nil {
				res.PromptTokens = r.Usage.PromptTokens
			}
			return res, err
		case op == OpRerank:
			res.Model = pickModel(t, probes.CapRerank)
			_, err := hf.New(c, t.BaseURL).Rerank(ctx, "ok", []string{"ok", "no"})
			return res, err
		case op == OpCompletion:
			res.Model = pickModel(t, "")
			req := hf.GenerateRequest{Inputs: prompt}
			req.Parameters.MaxNewTokens, req.Parameters.Details = budget, true
			r, err := hf.New(c, t.BaseURL).Generate(ctx, req)
			if r.Details != nil {
				res.CompletionTokens = r.Details.GeneratedTokens
			}
			return res, err
		default: // infer
			return kserveInfer(ctx, c, t, res)
		}
	})
}

func openaiChat(ctx context.Context, c *http.Client, k probes.Kind, t probes.Target, budget int, res probes.Result) (probes.Result, error) {
	res.Model = pickModel(t, probes.CapChat)
	oc := openai.New(c, t.BaseURL)
	if res.Model == "" && k != probes.KindLlamaCpp {
		// Not detected yet: ask, since most servers want a model they serve.
		l, err := oc.Models(ctx)
		if err != nil {
			return res, err
		}
		if len(l.Data) > 0 {
			res.Model = l.Data[0].ID
		}
	}
	if res.Model == "" {
		res.Model = "default" // llama.cpp and single-model servers ignore it
	}
	zero := 0.0
	req := openai.ChatRequest{
		Model: res.Model, Messages: []openai.Message{{Role: "user", Content: prompt}},
		MaxTokens: budget, Temperature: &zero,
	}
	if k == probes.KindLlamaCpp || k == probes.KindVLLM {
		req.ChatTemplateKwargs = map[string]any{"enable_thinking": false}
	}
	r, err := oc.ChatStream(ctx, req)
	res.TimeToFirstToken = r.TimeToFirstToken
	if r.Usage != nil {
		res.PromptTokens, res.CompletionTokens = r.Usage.PromptTokens, r.Usage.CompletionTokens
	} else if r.Chunks > 0 {
		res.CompletionTokens = int64(r.Chunks) // one token per chunk, roughly
	}
	return res, err
}

func ollamaChat(ctx context.Context, c *http.Client, t probes.Target, budget int, res probes.Result) (probes.Result, error) {
	res.Model = pickModel(t, probes.CapChat)
	think := false
	r, err := ollama.New(c, t.BaseURL).ChatStream(ctx, ollama.ChatRequest{
		Model: res.Model, Messages: []ollama.Message{{Role: "user", Content: prompt}}, Think: &think,
		Options: map[string]any{"num_predict": budget, "temperature": 0},
	})
	res.TimeToFirstToken = r.TimeToFirstToken
	res.PromptTokens, res.CompletionTokens = r.Final.PromptEvalCount, r.Final.EvalCount
	return res, err
}

func kserveInfer(ctx context.Context, c *http.Client, t probes.Target, res probes.Result) (probes.Result, error) {
	res.Model = pickModel(t, "")
	kc := kserve.New(c, t.BaseURL)
	meta, err := kc.Model(ctx, res.Model)
	if err != nil {
		return res, err
	}
	if len(meta.Inputs) == 0 {
		return res, fmt.Errorf("model %q has no inputs: %w", res.Model, probes.ErrNotReady)
	}
	in := meta.Inputs[0]
	tensor := kserve.InferTensor{Name: in.Name, Datatype: in.Datatype, Shape: []int64{1}}
	if in.Datatype == "BYTES" {
		tensor.Data = []any{prompt}
	} else {
		tensor.Data = []any{0}
	}
	_, err = kc.Infer(ctx, res.Model, kserve.InferRequest{Inputs: []kserve.InferTensor{tensor}})
	return res, err
}
