package llamacpp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/openai"
)

// Client talks to one llama-server: its own endpoints here, the
// OpenAI-compatible ones (ChatStream, Embeddings) through the embedded
// openai.Client. It is safe for concurrent use.
type Client struct {
	*openai.Client
}

// New returns a client for baseURL.
func New(client *http.Client, baseURL string) *Client {
	return &Client{openai.New(client, baseURL)}
}

func (c *Client) get(ctx context.Context, path string) ([]byte, error) {
	return probes.Fetch(ctx, c.HTTP, http.MethodGet, probes.JoinURL(c.BaseURL, path), nil)
}

// Models fetches GET /v1/models with llama.cpp's metadata.
func (c *Client) Models(ctx context.Context) (ModelList, error) {
	b, err := c.get(ctx, "/v1/models")
	if err != nil {
		return ModelList{}, err
	}
	return DecodeModels(b)
}

// Props fetches GET /props.
func (c *Client) Props(ctx context.Context) (Props, error) {
	b, err := c.get(ctx, "/props")
	if err != nil {
		return Props{}, err
	}
	return DecodeProps(b)
}

// Health fetches GET /health. A server still loading its model answers
// 503, which is returned as an *probes.HTTPError.
func (c *Client) Health(ctx context.Context) (Health, error) {
	b, err := c.get(ctx, "/health")
	if err != nil {
		return Health{}, err
	}
	return DecodeHealth(b)
}

// Detect asks the server what it is: a Detection of kind llamacpp when
// /v1/models is a list llama.cpp wrote (or any OpenAI model list when
// claim is set: the target is configured as llama.cpp), with the build and
// the models' context and size; an error wrapping probes.ErrNoMatch
// otherwise; transient errors unwrapped, for the caller to retry.
//
// Capabilities come from what the server does, never from a model's name:
// a llama-server started with --embeddings or --reranking serves only
// that, and says so only by answering (Capabilities, asked unless test is
// false). A router (its list gives each model a status, or its /props
// says role "router") is never asked: it would load the model a test
// names. Its models are loaded as its list says.
func (c *Client) Detect(ctx context.Context, claim, test bool) (probes.Detection, error) {
	list, err := c.Models(ctx)
	if err != nil {
		return probes.Detection{}, fmt.Errorf("llama.cpp: %w", probes.NoMatch(err))
	}
	if !claim && !list.Written() {
		return probes.Detection{}, fmt.Errorf("llama.cpp: /v1/models is not llama.cpp's: %w", probes.ErrNoMatch)
	}
	d := probes.Detection{Kind: probes.KindLlamaCpp, Server: "llama.cpp"}
	props, err := c.Props(ctx)
	haveProps := err == nil
	if err != nil && !errors.Is(probes.NoMatch(err), probes.ErrNoMatch) {
		// A missing or odd /props is fine (older builds); a timeout is not.
		return d, fmt.Errorf("llama.cpp props: %w", err)
	}
	router := list.Router() || haveProps && props.Role == "router"
	loaded := false
	if h, err := c.Health(ctx); err == nil {
		loaded = h.Status == "ok"
	} else if probes.Classify(err) == probes.ClassCanceled {
		return d, fmt.Errorf("llama.cpp health: %w", err)
	}
	if haveProps {
		d.Version = props.BuildInfo
	}
	var caps []probes.Capability
	if test && !router {
		if caps, err = c.Capabilities(ctx, list); err != nil {
			return d, err
		}
	}
	if router {
		caps = []probes.Capability{probes.CapChat, probes.CapCompletion} // as Capabilities takes them
	}
	for _, m := range list.Data {
		pm := probes.Model{ID: m.ID, Capabilities: caps, Loaded: loaded}
		if router {
			pm.Loaded = m.State() == StatusLoaded
		}
		if m.Meta != nil {
			pm.ContextLength = m.Meta.NCtx
			if pm.ContextLength == 0 {
				pm.ContextLength = m.Meta.NCtxTrain
			}
			pm.SizeBytes = m.Meta.Size
		}
		if haveProps {
			if pm.ContextLength == 0 {
				pm.ContextLength = props.DefaultGenerationSettings.NCtx
			}
			if pm.Has(probes.CapChat) {
				if props.Modalities.Vision {
					pm.Capabilities = append(pm.Capabilities, probes.CapVision)
				}
				if props.ChatTemplateCaps.SupportsTools || props.ChatTemplateCaps.SupportsToolCalls {
					pm.Capabilities = append(pm.Capabilities, probes.CapTools)
				}
			}
		}
		pm.Capabilities = probes.SortCapabilities(slices.Clone(pm.Capabilities))
		d.Models = append(d.Models, pm)
	}
	return d.Finish(), nil
}

// Capabilities finds out what a single-model llama-server serves: one
// embedding of a short input (started with --embeddings it embeds, and
// serves nothing else), else one ranking (--reranking), else it completes
// and chats. Without either option both answer 501 at once, with no
// inference. A router (a list of several models, or of one with a status)
// loads a model on a request for it: it is not asked, and its models are
// taken for what they are by default, chat and completion.
func (c *Client) Capabilities(ctx context.Context, list ModelList) ([]probes.Capability, error) {
	generative := []probes.Capability{probes.CapChat, probes.CapCompletion}
	if len(list.Data) != 1 || list.Router() {
		return generative, nil
	}
	model := list.Data[0].ID
	ok, err := c.CanEmbed(ctx, model)
	if err != nil {
		return nil, fmt.Errorf("llama.cpp embeddings test: %w", err)
	}
	if ok {
		return []probes.Capability{probes.CapEmbeddings}, nil
	}
	ok, err = c.CanRerank(ctx, model)
	if err != nil {
		return nil, fmt.Errorf("llama.cpp rerank test: %w", err)
	}
	if ok {
		return []probes.Capability{probes.CapRerank}, nil
	}
	return generative, nil
}
