package hf

import "github.com/vitals-dev/vitals/probes"

// TGISignals maps Text Generation Inference's /metrics to probes.Signals.
// TGI's router writes them with the Rust metrics-exporter-prometheus
// crate: counters without a _total suffix, no HELP lines, and a series
// only once it was first touched, so a server that has not served a
// request yet reports no request counters. Names are from router/src
// (server.rs, infer/mod.rs), backends/v3/src (backend.rs, queue.rs) and
// docs/source/reference/metrics.md.
var TGISignals = probes.SignalTable{
	Engine:   probes.EngineTGI,
	Prefixes: []string{"tgi_"},
	// The requests in the batch the server is running.
	Running: []probes.Source{{Names: []string{"tgi_batch_current_size"}}},
	Waiting: []probes.Source{{Names: []string{"tgi_queue_size"}}},
	// A histogram of tokens per request, recorded when a request
	// succeeds: its sum is the tokens of the requests that finished, and
	// does not move while a long one generates.
	GeneratedTokens: []probes.Source{{Names: []string{"tgi_request_generated_tokens"}}},
	Requests: []probes.RequestSource{
		{Source: probes.Source{Names: []string{"tgi_request_success"}}, Result: probes.RequestSuccess},
		// err is validation, overloaded, template, generation, incomplete
		// or dropped: the client went away.
		{Source: probes.Source{Names: []string{"tgi_request_failure"}}, Result: probes.RequestFailure,
			ResultLabel: "err", Results: map[string]probes.RequestResult{"dropped": probes.RequestCanceled}},
	},
}

// TEISignals maps Text Embeddings Inference's /metrics to probes.Signals:
// the queue and the request counters (TEI has no gauge of the requests it
// runs, nor tokens it generates). It uses the same exporter as TGI, with
// the same habits. Names are from core/src (queue.rs, infer.rs) and
// router/src/http/server.rs.
var TEISignals = probes.SignalTable{
	Engine:   probes.EngineTEI,
	Prefixes: []string{"te_"},
	Waiting:  []probes.Source{{Names: []string{"te_queue_size"}}},
	Requests: []probes.RequestSource{
		// method is single or batch.
		{Source: probes.Source{Names: []string{"te_request_success"}}, Result: probes.RequestSuccess},
		// err is tokenization, validation, overloaded, model_type,
		// inference, batch_size or dropped: the client went away.
		{Source: probes.Source{Names: []string{"te_request_failure"}}, Result: probes.RequestFailure,
			ResultLabel: "err", Results: map[string]probes.RequestResult{"dropped": probes.RequestCanceled}},
	},
}
