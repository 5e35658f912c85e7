package llamacpp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/vitals-dev/vitals/probes"
)

// Router mode. A llama-server started with --models-dir or
// --models-preset (and no --model) is a router over several models, each
// served by a child process it starts on demand
// (tools/server/server-models.cpp). What changes for a probe:
//
//   - GET /models and /v1/models list every model with its status
//     (ModelStatus); they never load one. GET /health and GET /props with
//     no ?model= are the router's own and load nothing either.
//   - Every other endpoint is proxied to the model the request names (the
//     body's "model" of a POST, ?model= of a GET: /props?model=, /slots,
//     /metrics), and a model that is unloaded is loaded for it first,
//     unless the router runs with --no-models-autoload or the request
//     says ?autoload=false; a request to a sleeping model wakes it. A
//     GET of /metrics or /slots with no ?model= is a 400 ("model name is
//     missing from the request").
//
// So in router mode the probes read the model list, and send a request
// naming a model only to a model the router says is loaded, always with
// ?autoload=false (NoAutoload), so that a model unloaded between the list
// and the request is refused rather than loaded. An unloaded model is
// cold, a loading one loading, a sleeping one sleeping: none of them is
// sent anything. Capability tests are never sent to a router.

// NoAutoload returns a client that sends every request with
// ?autoload=false, which a llama.cpp router reads as "do not load the
// model this request names": a request for a model that is not running
// is answered 400 "model is not loaded" instead. A single-model server
// ignores the parameter. The client shares c's transport, cookies,
// redirect policy and timeout.
func NoAutoload(c *http.Client) *http.Client {
	if c == nil {
		c = http.DefaultClient
	}
	nc := *c
	nc.Transport = noAutoload{c.Transport}
	return &nc
}

type noAutoload struct{ base http.RoundTripper }

func (t noAutoload) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context()) // a RoundTripper must not change the request
	q := r.URL.Query()
	q.Set("autoload", "false")
	r.URL.RawQuery = q.Encode()
	base := t.base
	if base == nil {
		base = http.DefaultTransport
	}
	return base.RoundTrip(r)
}

// pick returns the model of a router's list that t's probes are about:
// the target's model (by id or alias); else, when it names none, the
// first loaded model detection found capable of c (any capability when c
// is "" or detection knows none of the models); else the first sleeping
// one, else the first loading one, else the first one listed. It reports
// false when the target's model is not listed, or the list is empty.
func pick(t probes.Target, l ModelList, c probes.Capability) (ModelEntry, bool) {
	if t.Model != "" {
		return l.Find(t.Model)
	}
	capable := func(m ModelEntry) bool {
		if c == "" || len(t.Models) == 0 {
			return true
		}
		for _, d := range t.Models {
			if d.ID == m.ID {
				return d.Has(c) || len(d.Capabilities) == 0
			}
		}
		return false
	}
	for _, want := range []string{StatusLoaded, StatusSleeping, StatusLoading} {
		for _, m := range l.Data {
			if m.State() == want && (want != StatusLoaded || capable(m)) {
				return m, true
			}
		}
	}
	if len(l.Data) == 0 {
		return ModelEntry{}, false
	}
	return l.Data[0], true
}

// notServing says why the router's model m is not sent a request: nil
// when it is loaded; wrapping probes.ErrLoading while it loads (or
// downloads); wrapping probes.ErrAsleep while it sleeps, since a request
// would wake it; wrapping probes.ErrCold when it is unloaded, since a
// request would load it; wrapping probes.ErrNotReady when its process
// failed, or for a status this package does not know.
func notServing(m ModelEntry) error {
	switch s := m.State(); s {
	case StatusLoaded:
		return nil
	case StatusLoading, StatusDownloading:
		return fmt.Errorf("llama.cpp router: model %q is %s: %w", m.ID, s, probes.ErrLoading)
	case StatusSleeping:
		return fmt.Errorf("llama.cpp router: model %q sleeps, and a request naming it would wake it: %w", m.ID, probes.ErrAsleep)
	case StatusUnloaded:
		if m.Status.Failed {
			return fmt.Errorf("llama.cpp router: model %q failed: its server exited with status %d: %w", m.ID, m.Status.ExitCode, probes.ErrNotReady)
		}
		return fmt.Errorf("llama.cpp router: model %q is unloaded, and a request naming it would load it: %w", m.ID, probes.ErrCold)
	default:
		return fmt.Errorf("llama.cpp router: model %q is %q: %w", m.ID, s, probes.ErrNotReady)
	}
}

// routerReady is readiness against a router's list l: the target's model
// listed (or any model, when it names none), not loading and not failed.
// An unloaded or sleeping model is ready: the signals call it cold or
// sleeping.
func routerReady(t probes.Target, l ModelList) error {
	if len(l.Data) == 0 {
		return fmt.Errorf("llama.cpp router lists no model: %w", probes.ErrNotReady)
	}
	m, ok := pick(t, l, "")
	if !ok {
		return fmt.Errorf("llama.cpp router lists no model %q: %w", t.Model, probes.ErrNotReady)
	}
	if err := notServing(m); !errors.Is(err, probes.ErrCold) && !errors.Is(err, probes.ErrAsleep) {
		return err
	}
	return nil
}

// routerSignals reads a router's signals: the models it holds loaded
// (from its list, which loads nothing) and whether the target's model
// sleeps; and, when that model is loaded, its /metrics (the target's
// MetricsURL when it has one) and /slots, asked of it with ?model= and
// ?autoload=false. The loaded model the target
// names by an alias is listed under that name, as the target asks for it.
func routerSignals(ctx context.Context, c *http.Client, t probes.Target, l ModelList) probes.Signals {
	s := probes.Signals{Engine: probes.EngineLlamaCpp, Reported: probes.FieldLoadedModels | probes.FieldAsleep,
		LoadedModels: []probes.LoadedModel{}}
	m, ok := pick(t, l, "")
	for _, e := range l.Data {
		if e.State() != StatusLoaded {
			continue
		}
		lm := probes.LoadedModel{Name: e.ID}
		if ok && e.ID == m.ID && t.Model != "" {
			lm.Name = t.Model
		}
		if e.Meta != nil {
			lm.ContextLength = e.Meta.NCtx
		}
		s.LoadedModels = append(s.LoadedModels, lm)
	}
	if !ok {
		return s
	}
	switch m.State() {
	case StatusSleeping:
		s.Asleep = 1
	case StatusLoaded:
		nc := NoAutoload(c)
		mu := t.MetricsURL
		if mu == "" {
			mu = probes.JoinURL(t.BaseURL, "/metrics")
		}
		if b, err := probes.FetchMetrics(ctx, nc, withModel(mu, m.ID)); err == nil {
			if ms, err := MetricsSignals.Decode(b); err == nil {
				s = s.Merge(ms)
			}
		}
		if b, err := probes.Fetch(ctx, nc, http.MethodGet, withModel(probes.JoinURL(t.BaseURL, "/slots"), m.ID), nil); err == nil {
			if sl, err := DecodeSlotsSignals(b); err == nil {
				s = s.Merge(sl)
			}
		}
	}
	return s
}

// withModel returns u with ?model=id added to its query.
func withModel(u, id string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u // the fetch reports it
	}
	q := p.Query()
	q.Set("model", id)
	p.RawQuery = q.Encode()
	return p.String()
}
