package ollama

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

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
// the budget, or one /api/embed, against a model /api/ps says is loaded:
// the target's model, else the first loaded one that can do the
// operation. A model that is not loaded is cold: the probe does not load
// it (ErrCold). It runs only against a model kept loaded for good, with
// keep_alive -1, which changes nothing. Against a model with an expiry it
// is not sent (a *probes.NotSentError): every request that reaches a
// model moves its expires_at, and its keep_alive becomes the one of later
// requests that send none (see KeptForever).
func synthetic(ctx context.Context, c *http.Client, t probes.Target, cfg probes.Config) (probes.Result, error) {
	oc := New(c, t.BaseURL)
	op, capability, err := probes.ChatOrEmbeddingsFor(t)
	res := probes.Result{Operation: op}
	if err != nil {
		return res, err
	}
	ps, err := oc.PS(ctx)
	if err != nil {
		return res, err
	}
	m, ok := pickLoaded(t, ps, capability)
	if !ok {
		res.Model = probes.PickModel(t, capability)
		return res, fmt.Errorf("no model loaded to probe, %q not loaded either: %w", res.Model, probes.ErrCold)
	}
	res.Model = m.Name
	if until, ok := KeptForever(m.ExpiresAt, time.Now()); !ok {
		return res, &probes.NotSentError{Reason: fmt.Sprintf("an inference would move model %q's expires_at and keep-alive; "+
			"Ollama keeps it loaded until %s; liveness, readiness and /api/ps decided this check", m.Name, until)}
	}
	const keep = -1 // what the model has already: nothing moves
	if op == probes.OpEmbeddings {
		r, err := oc.Embed(ctx, EmbedRequest{Model: m.Name, Input: []string{probes.SyntheticPrompt}, KeepAlive: keep})
		res.PromptTokens = r.PromptEvalCount
		return res, err
	}
	think := false
	r, err := oc.ChatStream(ctx, ChatRequest{
		Model: m.Name, Messages: []Message{{Role: "user", Content: probes.SyntheticPrompt}}, Think: &think,
		Options:   map[string]any{"num_predict": probes.TokenBudget(cfg), "temperature": 0},
		KeepAlive: keep,
	})
	res.TimeToFirstToken = r.TimeToFirstToken
	res.PromptTokens, res.CompletionTokens = r.Final.PromptEvalCount, r.Final.EvalCount
	res.FinishReason = r.Final.DoneReason
	return res, err
}

// pickLoaded returns the loaded model a synthetic inference uses: the
// target's model when it is loaded; else, when the target names none, the
// first loaded model that detection found capable of c, or the first
// loaded model when detection knows none of them.
func pickLoaded(t probes.Target, ps []PSModel, c probes.Capability) (PSModel, bool) {
	name := func(m PSModel) string {
		if m.Name != "" {
			return m.Name
		}
		return m.Model
	}
	if t.Model != "" {
		i := slices.IndexFunc(ps, func(m PSModel) bool { return SameModel(name(m), t.Model) })
		if i < 0 {
			return PSModel{}, false
		}
		return ps[i], true
	}
	for _, m := range ps {
		j := slices.IndexFunc(t.Models, func(d probes.Model) bool { return SameModel(d.ID, name(m)) })
		if j >= 0 && t.Models[j].Has(c) || j < 0 && len(t.Models) == 0 {
			m.Name = name(m)
			return m, true
		}
	}
	return PSModel{}, false
}

// forever is how far ahead an expires_at must be to mean a model kept
// loaded for good (keep_alive -1 puts it centuries away).
const forever = 100 * 365 * 24 * time.Hour

// KeptForever reports whether expiresAt (RFC 3339, from /api/ps) at now
// means a model kept loaded for good, as keep_alive -1 leaves it. When it
// does not, it returns expiresAt as given, for a reason to name.
//
// Ollama moves expires_at to the end of the last request using a model
// plus that request's keep_alive, and keeps the keep_alive as the model's
// for later requests that send none (server/sched.go). So an inference
// against a model with an expiry changes how long it stays, whatever
// keep_alive it sends: even the time left moves expires_at by the
// request's length and shortens the keep-alive of the users' next
// requests. Only keep_alive -1 against a model kept for good changes
// nothing.
func KeptForever(expiresAt string, now time.Time) (string, bool) {
	at, err := time.Parse(time.RFC3339Nano, expiresAt)
	if err != nil {
		return fmt.Sprintf("%q (unreadable)", expiresAt), false
	}
	return expiresAt, at.Sub(now) >= forever
}

// maxShown bounds the /api/show calls of one signals read.
const maxShown = 16

// signals reads /api/ps: the models loaded, their memory and when they
// unload; and for each loaded model (up to maxShown) the weights blob its
// runner process was started with, which /api/show's modelfile names.
// /api/show reads the model's manifest only: it neither loads the model
// nor moves its expiry. It is asked once per model version (blobs), not
// at every check. A model whose show fails keeps no blob digest (its
// runner is then not attributed), and the read does not fail for it.
func signals(ctx context.Context, c *http.Client, t probes.Target) (probes.Signals, error) {
	b, err := probes.Fetch(ctx, c, http.MethodGet, probes.JoinURL(t.BaseURL, "/api/ps"), nil)
	if err != nil {
		return probes.Signals{}, err
	}
	s, err := DecodePSSignals(b)
	if err != nil {
		return s, err
	}
	cl := New(c, t.BaseURL)
	for i := range s.LoadedModels[:min(len(s.LoadedModels), maxShown)] {
		lm := &s.LoadedModels[i]
		k := blobKey{base: t.BaseURL, name: lm.Name, digest: lm.Digest}
		if d, ok := blobs.get(k); ok {
			lm.BlobDigest = d
			continue
		}
		if show, err := cl.Show(ctx, lm.Name); err == nil {
			lm.BlobDigest = show.BlobDigest()
			blobs.put(k, lm.BlobDigest)
		}
	}
	return s, nil
}

// blobs remembers the weights blob of each model version a server lists:
// a model's blob changes only with its manifest, whose digest /api/ps
// lists, so a server, name and manifest digest name one blob.
var blobs = blobCache{m: map[blobKey]string{}}

// maxBlobs bounds blobs; when full it starts again empty.
const maxBlobs = 4096

type blobKey struct{ base, name, digest string }

type blobCache struct {
	mu sync.Mutex
	m  map[blobKey]string
}

func (c *blobCache) get(k blobKey) (string, bool) {
	if k.digest == "" {
		return "", false // no manifest digest: nothing to tell versions apart
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.m[k]
	return d, ok
}

func (c *blobCache) put(k blobKey, d string) {
	if k.digest == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxBlobs {
		clear(c.m)
	}
	c.m[k] = d
}
