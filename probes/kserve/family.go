package kserve

import (
	"context"
	"fmt"
	"net/http"

	"github.com/vitals-dev/vitals/probes"
)

// Family returns the KServe v2 family (Triton among its servers), of the
// one kind kserve.
func Family() probes.Family {
	return probes.Family{
		Name:    "kserve",
		Kinds:   []probes.Kind{probes.KindKServe},
		Detect:  detect,
		Probes:  probeSet,
		Engines: []probes.EngineSignals{{Kind: probes.KindKServe, Table: TritonSignals}},
	}
}

func detect(ctx context.Context, c *http.Client, baseURL string, o probes.DetectOptions) (probes.Detection, error) {
	kc := New(c, baseURL)
	kc.Models = o.Models
	return kc.Detect(ctx)
}

func probeSet(probes.Kind) probes.ProbeSet {
	return probes.ProbeSet{
		Liveness: probes.ProbeFunc(func(ctx context.Context, c *http.Client, t probes.Target, _ probes.Config) (probes.Result, error) {
			return probes.Result{}, New(c, t.BaseURL).Live(ctx)
		}),
		Readiness: probes.ProbeFunc(readiness),
		Operation: operation,
		Synthetic: probes.ProbeFunc(infer),
		// Triton serves /metrics on a port of its own (8002 by default),
		// not on the inference port: readSignals finds it.
		Signals: readSignals(MetricsPort),

		PortOpensLoaded: true,
	}
}

// operation is an inference when the target has a model to send it to.
func operation(t probes.Target) string {
	if probes.PickModel(t, "") != "" {
		return probes.OpInfer
	}
	return ""
}

// readiness is /v2/health/ready, and the model's ready endpoint when the
// target has a model.
func readiness(ctx context.Context, c *http.Client, t probes.Target, _ probes.Config) (probes.Result, error) {
	kc := New(c, t.BaseURL)
	if err := kc.Ready(ctx); err != nil {
		return probes.Result{}, probes.NotReadyOn503(err)
	}
	if m := probes.PickModel(t, ""); m != "" {
		if err := kc.ModelReady(ctx, m); err != nil {
			return probes.Result{}, probes.NotReadyOn503(err)
		}
	}
	return probes.Result{}, nil
}

// infer sends one element to the model's first input: the prompt to a
// BYTES input, a zero to a numeric one.
func infer(ctx context.Context, c *http.Client, t probes.Target, _ probes.Config) (probes.Result, error) {
	res := probes.Result{Operation: probes.OpInfer, Model: probes.PickModel(t, "")}
	if res.Model == "" {
		return res, fmt.Errorf("no synthetic inference for %s without a model", t.Kind)
	}
	kc := New(c, t.BaseURL)
	meta, err := kc.Model(ctx, res.Model)
	if err != nil {
		return res, err
	}
	if len(meta.Inputs) == 0 {
		return res, fmt.Errorf("model %q has no inputs: %w", res.Model, probes.ErrNotReady)
	}
	in := meta.Inputs[0]
	tensor := InferTensor{Name: in.Name, Datatype: in.Datatype, Shape: []int64{1}}
	if in.Datatype == "BYTES" {
		tensor.Data = []any{probes.SyntheticPrompt}
	} else {
		tensor.Data = []any{0}
	}
	_, err = kc.Infer(ctx, res.Model, InferRequest{Inputs: []InferTensor{tensor}})
	return res, err
}
