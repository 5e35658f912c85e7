package llamacpp

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/openai"
)

// Family returns the llama.cpp family, of the one kind llamacpp.
func Family() probes.Family {
	return probes.Family{
		Name:   "llamacpp",
		Kinds:  []probes.Kind{probes.KindLlamaCpp},
		Detect: detect,
		Probes: probeSet,
	}
}

// detect takes any OpenAI model list for llama.cpp's when the target is
// configured as llama.cpp.
func detect(ctx context.Context, c *http.Client, baseURL string, o probes.DetectOptions) (probes.Detection, error) {
	return New(c, baseURL).Detect(ctx, o.Kind == probes.KindLlamaCpp)
}

func probeSet(probes.Kind) probes.ProbeSet {
	return probes.ProbeSet{
		Liveness:  probes.ProbeFunc(liveness),
		Readiness: probes.ProbeFunc(readiness),
		Operation: probes.ChatOrEmbeddings,
		Synthetic: probes.ProbeFunc(synthetic),
		Resources: probes.MetricsSeries(series...),
	}
}

// series are the series of llama.cpp's /metrics (--metrics) the resource
// probe keeps.
var series = []string{"llamacpp:requests_processing", "llamacpp:requests_deferred", "llamacpp:kv_cache_usage_ratio"}

// liveness is /health: a 503 is a server loading its model, alive but not
// ready.
func liveness(ctx context.Context, c *http.Client, t probes.Target, _ probes.Config) (probes.Result, error) {
	_, err := New(c, t.BaseURL).Health(ctx)
	var he *probes.HTTPError
	if errors.As(err, &he) && he.Status == http.StatusServiceUnavailable {
		return probes.Result{}, nil
	}
	return probes.Result{}, err
}

// readiness is /health answering 200 and /v1/models listing a model;
// llama.cpp serves its one model whatever the name asked, so the
// configured name is not looked for.
func readiness(ctx context.Context, c *http.Client, t probes.Target, _ probes.Config) (probes.Result, error) {
	lc := New(c, t.BaseURL)
	if _, err := lc.Health(ctx); err != nil {
		return probes.Result{}, probes.NotReadyOn503(err)
	}
	return probes.Result{}, openai.ModelsReady(ctx, lc.Client, "")
}

// synthetic chats with reasoning off, or embeds one input.
func synthetic(ctx context.Context, c *http.Client, t probes.Target, cfg probes.Config) (probes.Result, error) {
	oc := openai.New(c, t.BaseURL)
	switch probes.ChatOrEmbeddings(t) {
	case probes.OpChat:
		return openai.Chat(ctx, oc, probes.PickModel(t, probes.CapChat), probes.TokenBudget(cfg), map[string]any{"enable_thinking": false})
	case probes.OpEmbeddings:
		return openai.Embed(ctx, oc, probes.PickModel(t, probes.CapEmbeddings))
	}
	return probes.Result{}, fmt.Errorf("no synthetic inference for %s", t.Kind)
}
