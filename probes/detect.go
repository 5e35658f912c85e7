package probes

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/vitals-dev/vitals/internal/backoff"
)

// DetectOptions tunes Registry.Detect and is handed to each family's
// Detect. The zero value is usable: zero fields take the
// values of DefaultDetectOptions.
type DetectOptions struct {
	// Kind is a hint: KindAuto (or empty) asks every family in turn; a
	// concrete kind asks only its family.
	Kind Kind
	// Attempts bounds the detection rounds (default 4).
	Attempts int
	// InitialBackoff is the wait after the first failed round; it doubles
	// each round up to MaxBackoff (defaults 250ms and 5s).
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// StepTimeout bounds the questions to one family in one round
	// (default 5s); the caller's ctx bounds the whole.
	StepTimeout time.Duration
	// Sleep waits d or until ctx ends; nil means a timer. Tests inject one
	// that does not wait.
	Sleep func(ctx context.Context, d time.Duration) error
	// Models names models to describe on servers that cannot list them
	// (KServe).
	Models []string
	// MaxShow bounds Ollama's per-model /api/show calls.
	MaxShow int
	// MetricsURL is where the server's Prometheus metrics are when not at
	// its base URL's /metrics (the target's metrics_url): detection reads
	// them to fingerprint a server no family's API identified.
	MetricsURL string
	// NoTests asks a family not to test what the server can do by asking
	// it to (one embedding, one ranking), only to read what it says.
	NoTests bool
}

// DefaultDetectOptions returns the defaults.
func DefaultDetectOptions() DetectOptions {
	return DetectOptions{
		Kind:           KindAuto,
		Attempts:       4,
		InitialBackoff: 250 * time.Millisecond,
		MaxBackoff:     5 * time.Second,
		StepTimeout:    5 * time.Second,
		Sleep:          sleep,
	}
}

func (o DetectOptions) withDefaults() DetectOptions {
	d := DefaultDetectOptions()
	if o.Kind == "" {
		o.Kind = d.Kind
	}
	if o.Attempts <= 0 {
		o.Attempts = d.Attempts
	}
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = d.InitialBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = d.MaxBackoff
	}
	if o.MaxBackoff < o.InitialBackoff {
		o.MaxBackoff = o.InitialBackoff
	}
	if o.StepTimeout <= 0 {
		o.StepTimeout = d.StepTimeout
	}
	if o.Sleep == nil {
		o.Sleep = d.Sleep
	}
	return o
}

// sleep waits d or until ctx ends, whichever is first, and returns ctx's
// error in the second case.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Detect asks the endpoint at baseURL what it is and what it can do,
// one family at a time in the registry's order.
//
// When opts.Kind is KindAuto and no family's API recognised the endpoint
// though it answered, or only a generic family did, Detect reads the
// server's metrics once (opts.MetricsURL, else the base URL's /metrics;
// bounded as every signals read, within opts.StepTimeout) and
// fingerprints them by the prefixes of every registered engine's table
// (Registry.Fingerprint). An unidentified server is then of the engine's
// kind. A generic answer (KindOpenAI, say) is of the engine's kind only
// when that kind's own liveness probe answers too; otherwise it stays as
// the generic family said. Each metrics read is one request of a
// detection, not of a round.
//
// It returns a Detection of a concrete kind and a nil error when a family
// or the metrics recognised the endpoint; KindUnknown with a Reason and a
// nil error when the endpoint answered but neither did; and KindUnknown
// with a Reason and a non-nil error when the endpoint could not be asked
// (it kept timing out, refusing or failing with 5xx for opts.Attempts
// rounds, it refused the agent's credentials, or ctx ended). Detect never
// panics on what a server sends.
func (r *Registry) Detect(ctx context.Context, client *http.Client, baseURL string, opts DetectOptions) (Detection, error) {
	o := opts.withDefaults()
	fams := r.families
	if o.Kind != KindAuto {
		f, ok := r.Family(o.Kind)
		if !ok {
			err := fmt.Errorf("detect %s: kind %q has no detector", baseURL, o.Kind)
			return Detection{Kind: KindUnknown, Reason: err.Error()}, err
		}
		fams = []Family{f}
	}

	auto := o.Kind == KindAuto
	var (
		tentative *Detection // a generic match seen while a more specific family failed transiently
		lastErr   error
	)
	for attempt := 1; attempt <= o.Attempts; attempt++ {
		d, reasons, err := round(ctx, client, baseURL, fams, o)
		d.Attempts = attempt
		switch {
		case err == nil && d.Kind != KindUnknown:
			if f, _ := r.Family(d.Kind); auto && f.Generic {
				d = r.refine(ctx, client, baseURL, o, d)
			}
			return d, nil
		case err == nil:
			if !auto {
				d.Reason = "no known AI API answered: " + strings.Join(reasons, "; ")
				return d, nil
			}
			why := "no known AI API answered (" + strings.Join(reasons, "; ") + ")"
			md, merr := r.fromMetrics(ctx, client, baseURL, o)
			if merr == nil {
				md.Attempts = attempt
				return md, nil
			}
			d.Reason = "kind not identified: " + why + " and " + merr.Error() + "; set kind: in the target's config"
			return d, nil
		}
		var te *transientError
		if !errors.As(err, &te) {
			d = Detection{Kind: KindUnknown, Reason: err.Error(), Attempts: attempt}
			return d, fmt.Errorf("detect %s: %w", baseURL, err)
		}
		if te.generic != nil {
			g := *te.generic
			g.Attempts = attempt
			tentative = &g
		}
		lastErr = te.err
		if attempt == o.Attempts {
			break
		}
		if err := o.Sleep(ctx, backoff.Exponential(attempt-1, o.InitialBackoff, o.MaxBackoff)); err != nil {
			d := Detection{Kind: KindUnknown, Reason: err.Error(), Attempts: attempt}
			return d, fmt.Errorf("detect %s: %w", baseURL, err)
		}
	}
	if tentative != nil {
		return *tentative, nil
	}
	err := fmt.Errorf("detect %s: gave up after %d attempts: %w", baseURL, o.Attempts, lastErr)
	return Detection{Kind: KindUnknown, Reason: err.Error(), Attempts: o.Attempts}, err
}

// transientError is a round that failed in a way worth retrying.
type transientError struct {
	err     error
	generic *Detection
}

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// round asks each family once. It returns a concrete Detection; or
// KindUnknown with the families' reasons; or a *transientError when a
// family timed out, was refused or reset (the round stops there), or
// answered 5xx and no specific family matched; or another error (TLS,
// DNS, ctx ended, credentials refused with no family matching) that
// retrying will not fix.
func round(ctx context.Context, client *http.Client, baseURL string, fams []Family, o DetectOptions) (Detection, []string, error) {
	var (
		reasons   []string
		transient error
		auth      error // a family was refused the agent's credentials
	)
	for _, f := range fams {
		fo := o
		if f.Generic && transient != nil {
			// The server may be of the family that failed, one that loads
			// a model for any request it is sent (Ollama): ask it only
			// what changes nothing.
			fo.NoTests = true
		}
		sctx, cancel := context.WithTimeout(ctx, o.StepTimeout)
		d, err := safeDetect(sctx, f, client, baseURL, fo)
		cancel()
		if err == nil {
			if f.Generic && transient != nil {
				// An Ollama or TGI server also answers /v1/models: do not
				// settle for a generic answer while a more specific family
				// failed.
				return Detection{Kind: KindUnknown}, nil, &transientError{err: transient, generic: &d}
			}
			return d, nil, nil
		}
		if ctx.Err() != nil {
			return Detection{Kind: KindUnknown}, nil, ctx.Err()
		}
		class := Classify(err)
		switch {
		case errors.Is(err, ErrNoMatch):
			reasons = append(reasons, err.Error())
		case class == ClassTimeout || class == ClassRefused || class == ClassReset:
			return Detection{Kind: KindUnknown}, nil, &transientError{err: fmt.Errorf("%s: %w", f.Name, err)}
		case class == ClassHTTP5xx:
			transient = fmt.Errorf("%s: %w", f.Name, err)
			reasons = append(reasons, err.Error())
		case class == ClassAuth:
			if auth == nil {
				auth = fmt.Errorf("%s: %w", f.Name, err)
			}
			reasons = append(reasons, err.Error())
		case class == ClassTLS || class == ClassDNS || class == ClassCanceled:
			return Detection{Kind: KindUnknown}, nil, fmt.Errorf("%s: %w", f.Name, err)
		default:
			reasons = append(reasons, err.Error())
		}
	}
	if transient != nil {
		return Detection{Kind: KindUnknown}, nil, &transientError{err: transient}
	}
	if auth != nil {
		// Nothing matched and something wants credentials: the server
		// is most likely an AI server behind a key; retrying with the
		// same credentials will not help.
		return Detection{Kind: KindUnknown}, nil, fmt.Errorf("%w (set the target's http_config)", auth)
	}
	return Detection{Kind: KindUnknown}, reasons, nil
}

// safeDetect runs one family's detector and turns a panic into an error,
// so that a decoder bug never takes the agent down.
func safeDetect(ctx context.Context, f Family, client *http.Client, baseURL string, o DetectOptions) (d Detection, err error) {
	defer func() {
		if r := recover(); r != nil {
			d, err = Detection{}, fmt.Errorf("%s: detector panicked: %v", f.Name, r)
		}
	}()
	return f.Detect(ctx, client, baseURL, o)
}

// fromMetrics identifies the server at baseURL by its metrics alone: a
// Detection of the kind of the registered engine Fingerprint names, with
// Server the engine's name and FromMetrics set, or an error saying, for a
// person, why the metrics named none.
func (r *Registry) fromMetrics(ctx context.Context, client *http.Client, baseURL string, o DetectOptions) (Detection, error) {
	es, err := r.readFingerprint(ctx, client, baseURL, o)
	if err != nil {
		return Detection{}, err
	}
	return Detection{Kind: es.Kind, Server: string(es.Table.Engine), FromMetrics: true}, nil
}

// refine checks a generic family's answer d against the server's
// metrics: when they are of an engine of another kind and that kind's
// liveness probe answers, d is of that kind (a vLLM or a TGI behind a
// gateway that rewrites /v1/models); otherwise d stays as it was.
func (r *Registry) refine(ctx context.Context, client *http.Client, baseURL string, o DetectOptions, d Detection) Detection {
	es, err := r.readFingerprint(ctx, client, baseURL, o)
	if err != nil || es.Kind == d.Kind {
		return d
	}
	sctx, cancel := context.WithTimeout(ctx, o.StepTimeout)
	defer cancel()
	t := Target{BaseURL: baseURL, MetricsURL: o.MetricsURL, Kind: es.Kind, Models: d.Models, Capabilities: d.Capabilities}
	if err := safeProbe(sctx, r.Probes(es.Kind).Liveness, client, t); err != nil {
		return d
	}
	d.Kind, d.FromMetrics = es.Kind, true
	if d.Server == "" {
		d.Server = string(es.Table.Engine)
	}
	return d
}

// readFingerprint reads the server's metrics once, within o.StepTimeout
// and MaxMetricsBytes, and fingerprints them; it returns the engine, or
// an error saying what the metrics lacked.
func (r *Registry) readFingerprint(ctx context.Context, client *http.Client, baseURL string, o DetectOptions) (EngineSignals, error) {
	u := o.MetricsURL
	if u == "" {
		u = JoinURL(baseURL, "/metrics")
	}
	sctx, cancel := context.WithTimeout(ctx, o.StepTimeout)
	defer cancel()
	b, err := FetchMetrics(sctx, client, u)
	if err != nil {
		return EngineSignals{}, fmt.Errorf("its metrics could not be read: %w", err)
	}
	es, ok := r.Fingerprint(b)
	if !ok {
		return EngineSignals{}, fmt.Errorf("%s has no known engine prefix (%s)", u, strings.Join(r.Prefixes(), ", "))
	}
	return es, nil
}

// safeProbe runs p against t and turns a panic into an error.
func safeProbe(ctx context.Context, p Probe, client *http.Client, t Target) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("probe panicked: %v", r)
		}
	}()
	_, err = p.Probe(ctx, client, t, Config{})
	return err
}
