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
		Name:    "llamacpp",
		Kinds:   []probes.Kind{probes.KindLlamaCpp},
		Detect:  detect,
		Probes:  probeSet,
		Engines: []probes.EngineSignals{{Kind: probes.KindLlamaCpp, Table: MetricsSignals}},
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

// readiness is /health answering 200 and /v1/models listing a model. A
// single-model llama.cpp serves its one model whatever the name asked, so
// the configured name is not looked for; a router must list it, and it
// must not be loading or failed (routerReady).
func readiness(ctx context.Context, c *http.Client, t probes.Target, _ probes.Config) (probes.Result, error) {
	lc := New(c, t.BaseURL)
	if _, err := lc.Health(ctx); err != nil {
		return probes.Result{}, probes.NotReadyOn503(err)
	}
	l, err := lc.Models(ctx)
	switch {
	case err != nil:
		return probes.Result{}, err
	case l.Router():
		return probes.Result{}, routerReady(t, l)
	case len(l.Data) == 0:
		return probes.Result{}, fmt.Errorf("/v1/models lists no model: %w", probes.ErrNotReady)
	}
	return probes.Result{}, nil
}

// synthetic chats with reasoning off, or embeds one input. Against a
// router it runs only on a model the router's list says is loaded (pick
// says which), with ?autoload=false; any other model is not sent anything
// (notServing says why).
func synthetic(ctx context.Context, c *http.Client, t probes.Target, cfg probes.Config) (probes.Result, error) {
	op, capability, err := probes.ChatOrEmbeddingsFor(t)
	res := probes.Result{Operation: op}
	if err != nil {
		return res, err
	}
	model := probes.PickModel(t, capability)
	l, err := New(c, t.BaseURL).Models(ctx)
	if err != nil {
		return res, err
	}
	if l.Router() {
		m, ok := pick(t, l, capability)
		if !ok {
			return res, fmt.Errorf("llama.cpp router lists no model %q: %w", t.Model, probes.ErrNotReady)
		}
		res.Model = m.ID
		if err := notServing(m); err != nil {
			return res, err
		}
		model, c = m.ID, NoAutoload(c)
	}
	oc := openai.New(c, t.BaseURL)
	if op == probes.OpEmbeddings {
		return openai.Embed(ctx, oc, model)
	}
	return openai.Chat(ctx, oc, model, probes.TokenBudget(cfg), map[string]any{"enable_thinking": false})
}

// signals reads /metrics (served with --metrics) and /slots (served unless
// --no-slots), and fails only when neither answers. A router answers both
// 400, as they name no model: its signals are then read from its model
// list and from the target's model, when loaded (routerSignals).
func signals(ctx context.Context, c *http.Client, t probes.Target) (probes.Signals, error) {
	m, merr := probes.ReadMetrics(MetricsSignals)(ctx, c, t)
	var sl probes.Signals
	b, serr := probes.Fetch(ctx, c, http.MethodGet, probes.JoinURL(t.BaseURL, "/slots"), nil)
	if serr == nil {
		sl, serr = DecodeSlotsSignals(b)
	}
	switch {
	case merr != nil && serr != nil:
		if badRequest(merr) && badRequest(serr) {
			if l, err := New(c, t.BaseURL).Models(ctx); err == nil && l.Router() {
				return routerSignals(ctx, c, t, l), nil
			}
		}
		return probes.Signals{}, errors.Join(merr, serr)
	case merr != nil:
		return sl, nil
	}
	return m.Merge(sl), nil
}

// badRequest reports whether err is an HTTP 400.
func badRequest(err error) bool {
	var he *probes.HTTPError
	return errors.As(err, &he) && he.Status == http.StatusBadRequest
}
