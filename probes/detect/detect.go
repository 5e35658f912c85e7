package detect

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/vitals-dev/vitals/internal/backoff"
	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/hf"
	"github.com/vitals-dev/vitals/probes/kserve"
	"github.com/vitals-dev/vitals/probes/ollama"
	"github.com/vitals-dev/vitals/probes/openai"
)

// Options tunes Detect. The zero value is usable: zero fields take the
// values of DefaultOptions.
type Options struct {
	// Kind is a hint: KindAuto (or empty) asks every family in turn; a
	// concrete kind asks only its family.
	Kind probes.Kind
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
}

// DefaultOptions returns the defaults.
func DefaultOptions() Options {
	return Options{
		Kind:           probes.KindAuto,
		Attempts:       4,
		InitialBackoff: 250 * time.Millisecond,
		MaxBackoff:     5 * time.Second,
		StepTimeout:    5 * time.Second,
		Sleep:          Sleep,
	}
}

func (o Options) withDefaults() Options {
	d := DefaultOptions()
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

// Sleep waits d or until ctx ends, whichever is first, and returns ctx's
// error in the second case.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// family is one protocol family's detector.
type family struct {
	name   string
	kinds  []probes.Kind
	detect func(ctx context.Context, client *http.Client, baseURL string, o Options) (probes.Detection, error)
}

// families in the order Detect asks them.
var families = []family{
	{"kserve", []probes.Kind{probes.KindKServe}, func(ctx context.Context, c *http.Client, u string, o Options) (probes.Detection, error) {
		kc := kserve.New(c, u)
		kc.Models = o.Models
		return kc.Detect(ctx)
	}},
	{"hf", []probes.Kind{probes.KindTGI, probes.KindTEI}, func(ctx context.Context, c *http.Client, u string, _ Options) (probes.Detection, error) {
		return hf.New(c, u).Detect(ctx)
	}},
	{"ollama", []probes.Kind{probes.KindOllama}, func(ctx context.Context, c *http.Client, u string, o Options) (probes.Detection, error) {
		oc := ollama.New(c, u)
		oc.MaxShow = o.MaxShow
		return oc.Detect(ctx)
	}},
	{"openai", []probes.Kind{probes.KindOpenAI, probes.KindLlamaCpp, probes.KindVLLM}, func(ctx context.Context, c *http.Client, u string, _ Options) (probes.Detection, error) {
		return openai.New(c, u).Detect(ctx)
	}},
}

// Detect asks the endpoint at baseURL what it is and what it can do.
//
// It returns a Detection of a concrete kind and a nil error when a family
// recognised the endpoint; KindUnknown with a Reason and a nil error when
// the endpoint answered but no family recognised it; and KindUnknown with a
// Reason and a non-nil error when the endpoint could not be asked (it kept
// timing out, refusing or failing with 5xx for opts.Attempts rounds, or
// ctx ended). Detect never panics on what a server sends.
func Detect(ctx context.Context, client *http.Client, baseURL string, opts Options) (probes.Detection, error) {
	o := opts.withDefaults()
	fams := families
	if o.Kind != probes.KindAuto {
		fams = nil
		for _, f := range families {
			for _, k := range f.kinds {
				if k == o.Kind {
					fams = append(fams, f)
				}
			}
		}
		if len(fams) == 0 {
			err := fmt.Errorf("detect %s: kind %q has no detector", baseURL, o.Kind)
			return probes.Detection{Kind: probes.KindUnknown, Reason: err.Error()}, err
		}
	}

	var (
		tentative *probes.Detection // a generic match seen while a more specific family failed transiently
		lastErr   error
	)
	for attempt := 1; attempt <= o.Attempts; attempt++ {
		d, reasons, err := round(ctx, client, baseURL, fams, o)
		d.Attempts = attempt
		switch {
		case err == nil && d.Kind != probes.KindUnknown:
			return hinted(d, o.Kind), nil
		case err == nil:
			d.Reason = "no known AI API answered: " + strings.Join(reasons, "; ")
			return d, nil
		}
		var te *transientError
		if !errors.As(err, &te) {
			d = probes.Detection{Kind: probes.KindUnknown, Reason: err.Error(), Attempts: attempt}
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
			d := probes.Detection{Kind: probes.KindUnknown, Reason: err.Error(), Attempts: attempt}
			return d, fmt.Errorf("detect %s: %w", baseURL, err)
		}
	}
	if tentative != nil {
		return hinted(*tentative, o.Kind), nil
	}
	err := fmt.Errorf("detect %s: gave up after %d attempts: %w", baseURL, o.Attempts, lastErr)
	return probes.Detection{Kind: probes.KindUnknown, Reason: err.Error(), Attempts: o.Attempts}, err
}

// hinted applies a hint that is more specific than a generic OpenAI match:
// a target configured as llamacpp or vllm whose server does not say so.
func hinted(d probes.Detection, hint probes.Kind) probes.Detection {
	if d.Kind == probes.KindOpenAI && (hint == probes.KindLlamaCpp || hint == probes.KindVLLM) {
		d.Kind = hint
	}
	return d
}

// transientError is a round that failed in a way worth retrying.
type transientError struct {
	err     error
	generic *probes.Detection
}

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// round asks each family once. It returns a concrete Detection; or
// KindUnknown with the families' reasons; or a *transientError when a
// family timed out, was refused or reset (the round stops there), or
// answered 5xx and no specific family matched; or another error (TLS,
// DNS, ctx ended) that retrying will not fix.
func round(ctx context.Context, client *http.Client, baseURL string, fams []family, o Options) (probes.Detection, []string, error) {
	var (
		reasons   []string
		transient error
	)
	for _, f := range fams {
		sctx, cancel := context.WithTimeout(ctx, o.StepTimeout)
		d, err := safeDetect(sctx, f, client, baseURL, o)
		cancel()
		if err == nil {
			if d.Kind == probes.KindOpenAI && transient != nil {
				// An Ollama or TGI server also answers /v1/models: do not
				// settle for "openai" while a more specific family failed.
				return probes.Detection{Kind: probes.KindUnknown}, nil, &transientError{err: transient, generic: &d}
			}
			return d, nil, nil
		}
		if ctx.Err() != nil {
			return probes.Detection{Kind: probes.KindUnknown}, nil, ctx.Err()
		}
		class := probes.Classify(err)
		switch {
		case errors.Is(err, probes.ErrNoMatch):
			reasons = append(reasons, err.Error())
		case class == probes.ClassTimeout || class == probes.ClassRefused || class == probes.ClassReset:
			return probes.Detection{Kind: probes.KindUnknown}, nil, &transientError{err: fmt.Errorf("%s: %w", f.name, err)}
		case class == probes.ClassHTTP5xx:
			transient = fmt.Errorf("%s: %w", f.name, err)
			reasons = append(reasons, err.Error())
		case class == probes.ClassTLS || class == probes.ClassDNS || class == probes.ClassCanceled:
			return probes.Detection{Kind: probes.KindUnknown}, nil, fmt.Errorf("%s: %w", f.name, err)
		default:
			reasons = append(reasons, err.Error())
		}
	}
	if transient != nil {
		return probes.Detection{Kind: probes.KindUnknown}, nil, &transientError{err: transient}
	}
	return probes.Detection{Kind: probes.KindUnknown}, reasons, nil
}

// safeDetect runs one family's detector and turns a panic into an error,
// so that a decoder bug never takes the agent down.
func safeDetect(ctx context.Context, f family, client *http.Client, baseURL string, o Options) (d probes.Detection, err error) {
	defer func() {
		if r := recover(); r != nil {
			d, err = probes.Detection{}, fmt.Errorf("%s: detector panicked: %v", f.name, r)
		}
	}()
	return f.detect(ctx, client, baseURL, o)
}
