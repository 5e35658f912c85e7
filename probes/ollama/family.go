package ollama

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/vitals-dev/vitals/probes"
)

// Family returns the Ollama family, of the one kind ollama.
func Family() probes.Family {
	return probes.Family{
		Name:   "ollama",
		Kinds:  []probes.Kind{probes.KindOllama},
		Detect: detect,
		Probes: probeSet,
	}
}

func detect(ctx context.Context, c *http.Client, baseURL string, o probes.DetectOptions) (probes.Detection, error) {
	oc := New(c, baseURL)
	oc.MaxShow = o.MaxShow
	return oc.Detect(ctx)
}

func probeSet(probes.Kind) probes.ProbeSet {
	return probes.ProbeSet{
		Liveness:  probes.ProbeFunc(liveness),
		Readiness: probes.ProbeFunc(readiness),
		Operation: probes.ChatOrEmbeddings,
		Synthetic: probes.ProbeFunc(synthetic),
		Signals:   signals,
	}
}

// liveness is /api/version, which also gives the version.
func liveness(ctx context.Context, c *http.Client, t probes.Target, _ probes.Config) (probes.Result, error) {
	v, err := New(c, t.BaseURL).Version(ctx)
	return probes.Result{Version: v}, err
}

// readiness is /api/tags listing a model, and the configured one.
func readiness(ctx context.Context, c *http.Client, t probes.Target, _ probes.Config) (probes.Result, error) {
	tags, err := New(c, t.BaseURL).Tags(ctx)
	if err != nil {
		return probes.Result{}, err
	}
	if len(tags) == 0 {
		return probes.Result{}, fmt.Errorf("/api/tags lists no model: %w", probes.ErrNotReady)
	}
	if t.Model != "" && !slices.ContainsFunc(tags, func(m TagModel) bool { return SameModel(m.Name, t.Model) }) {
		return probes.Result{}, fmt.Errorf("model %q not pulled: %w", t.Model, probes.ErrNotReady)
	}
	return probes.Result{}, nil
}

// SameModel reports whether a and b name the same model, an untagged name
// being the ":latest" tag.
func SameModel(a, b string) bool {
	norm := func(s string) string {
		if !strings.Contains(s, ":") {
			return s + ":latest"
		}
		return s
	}
	return norm(a) == norm(b)
}

// synthetic is a streamed /api/chat with thinking off and num_predict at
// the budget, or one /api/embed.
func synthetic(ctx context.Context, c *http.Client, t probes.Target, cfg probes.Config) (probes.Result, error) {
	oc := New(c, t.BaseURL)
	switch op := probes.ChatOrEmbeddings(t); op {
	case probes.OpChat:
		res := probes.Result{Operation: op, Model: probes.PickModel(t, probes.CapChat)}
		think := false
		r, err := oc.ChatStream(ctx, ChatRequest{
			Model: res.Model, Messages: []Message{{Role: "user", Content: probes.SyntheticPrompt}}, Think: &think,
			Options: map[string]any{"num_predict": probes.TokenBudget(cfg), "temperature": 0},
		})
		res.TimeToFirstToken = r.TimeToFirstToken
		res.PromptTokens, res.CompletionTokens = r.Final.PromptEvalCount, r.Final.EvalCount
		return res, err
	case probes.OpEmbeddings:
		res := probes.Result{Operation: op, Model: probes.PickModel(t, probes.CapEmbeddings)}
		r, err := oc.Embed(ctx, EmbedRequest{Model: res.Model, Input: []string{probes.SyntheticPrompt}})
		res.PromptTokens = r.PromptEvalCount
		return res, err
	}
	return probes.Result{}, fmt.Errorf("no synthetic inference for %s", t.Kind)
}

// signals reads /api/ps: the models loaded, their memory and when they
// unload.
func signals(ctx context.Context, c *http.Client, t probes.Target) (probes.Signals, error) {
	b, err := probes.Fetch(ctx, c, http.MethodGet, probes.JoinURL(t.BaseURL, "/api/ps"), nil)
	if err != nil {
		return probes.Signals{}, err
	}
	return DecodePSSignals(b)
}
