package hf

import (
	"context"
	"fmt"
	"net/http"

	"github.com/vitals-dev/vitals/probes"
)

// Family returns the Hugging Face family: TGI and TEI.
func Family() probes.Family {
	return probes.Family{
		Name:   "hf",
		Kinds:  []probes.Kind{probes.KindTGI, probes.KindTEI},
		Detect: detect,
		Probes: probeSet,
		Engines: []probes.EngineSignals{
			{Kind: probes.KindTGI, Table: TGISignals},
			{Kind: probes.KindTEI, Table: TEISignals},
		},
	}
}

func detect(ctx context.Context, c *http.Client, baseURL string, _ probes.DetectOptions) (probes.Detection, error) {
	return New(c, baseURL).Detect(ctx)
}

func probeSet(k probes.Kind) probes.ProbeSet {
	set := probes.ProbeSet{
		Liveness: probes.ProbeFunc(func(ctx context.Context, c *http.Client, t probes.Target, _ probes.Config) (probes.Result, error) {
			return probes.Result{}, New(c, t.BaseURL).Health(ctx)
		}),
		Readiness: probes.ProbeFunc(readiness),

		PortOpensLoaded: true,
	}
	if k == probes.KindTGI {
		set.Operation = func(probes.Target) string { return probes.OpCompletion }
		set.Synthetic = probes.ProbeFunc(generate)
		set.Signals = probes.ReadMetrics(TGISignals)
		return set
	}
	set.Operation = teiOperation
	set.Synthetic = probes.ProbeFunc(teiSynthetic)
	set.Signals = probes.ReadMetrics(TEISignals)
	return set
}

// readiness is /info naming a model.
func readiness(ctx context.Context, c *http.Client, t probes.Target, _ probes.Config) (probes.Result, error) {
	info, err := New(c, t.BaseURL).Info(ctx)
	res := probes.Result{Version: info.Version}
	if err != nil {
		return res, err
	}
	if info.ModelID == "" {
		return res, fmt.Errorf("/info names no model: %w", probes.ErrNotReady)
	}
	return res, nil
}

// generate is TGI's /generate with max_new_tokens at the budget.
func generate(ctx context.Context, c *http.Client, t probes.Target, cfg probes.Config) (probes.Result, error) {
	res := probes.Result{Operation: probes.OpCompletion, Model: probes.PickModel(t, "")}
	req := GenerateRequest{Inputs: probes.SyntheticPrompt}
	req.Parameters.MaxNewTokens, req.Parameters.Details = probes.TokenBudget(cfg), true
	r, err := New(c, t.BaseURL).Generate(ctx, req)
	if r.Details != nil {
		res.CompletionTokens, res.FinishReason = r.Details.GeneratedTokens, r.Details.FinishReason
	}
	return res, err
}

// teiOperation embeds on an embedding model, ranks on a reranker and has
// nothing to run on a classifier.
func teiOperation(t probes.Target) string {
	switch {
	case t.Has(probes.CapEmbeddings):
		return probes.OpEmbeddings
	case t.Has(probes.CapRerank):
		return probes.OpRerank
	}
	return ""
}

func teiSynthetic(ctx context.Context, c *http.Client, t probes.Target, _ probes.Config) (probes.Result, error) {
	hc := New(c, t.BaseURL)
	switch op := teiOperation(t); op {
	case probes.OpEmbeddings:
		res := probes.Result{Operation: op, Model: probes.PickModel(t, probes.CapEmbeddings)}
		_, err := hc.Embed(ctx, []string{probes.SyntheticPrompt})
		return res, err
	case probes.OpRerank:
		res := probes.Result{Operation: op, Model: probes.PickModel(t, probes.CapRerank)}
		_, err := hc.Rerank(ctx, "ok", []string{"ok", "no"})
		return res, err
	}
	return probes.Result{}, fmt.Errorf("no synthetic inference for %s", t.Kind)
}
