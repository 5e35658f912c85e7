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
	return New(c, baseURL).Detect(ctx, o.Kind == probes.KindLlamaCpp, !o.NoTests)
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

// signals reads /metrics (served with --metrics) and /slots (served unless
// --no-slots), and fails only when neither answers.
func signals(ctx context.Context, c *http.Client, t probes.Target) (probes.Signals, error) {
	m, merr := probes.ReadMetrics(MetricsSignals)(ctx, c, t)
	var sl probes.Signals
	b, serr := probes.Fetch(ctx, c, http.MethodGet, probes.JoinURL(t.BaseURL, "/slots"), nil)
	if serr == nil {
		sl, serr = DecodeSlotsSignals(b)
	}
	switch {
	case merr != nil && serr != nil:
		return probes.Signals{}, errors.Join(merr, serr)
	case merr != nil:
		return sl, nil
	}
	return m.Merge(sl), nil
}
