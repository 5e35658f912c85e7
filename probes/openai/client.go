package openai

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/vitals-dev/vitals/probes"
)

// Client talks to one OpenAI-compatible server. It holds no state besides
// its fields and is safe for concurrent use.
type Client struct {
	// HTTP sends the requests; nil means http.DefaultClient.
	HTTP *http.Client
	// BaseURL is the server root, without /v1 ("http://127.0.0.1:8080").
	BaseURL string
	// Now is the clock for time to first token; nil means time.Now.
	Now func() time.Time
}

// New returns a client for baseURL.
func New(client *http.Client, baseURL string) *Client {
	return &Client{HTTP: client, BaseURL: baseURL}
}

func (c *Client) url(path string) string { return probes.JoinURL(c.BaseURL, path) }

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Models fetches GET /v1/models.
func (c *Client) Models(ctx context.Context) (ModelList, error) {
	b, err := probes.Fetch(ctx, c.HTTP, http.MethodGet, c.url("/v1/models"), nil)
	if err != nil {
		return ModelList{}, err
	}
	return DecodeModels(b)
}

// Version fetches vLLM's GET /version.
func (c *Client) Version(ctx context.Context) (string, error) {
	b, err := probes.Fetch(ctx, c.HTTP, http.MethodGet, c.url("/version"), nil)
	if err != nil {
		return "", err
	}
	return DecodeVersion(b)
}

// StreamResult summarises a streamed chat completion.
type StreamResult struct {
	Content string
	Chunks  int
	// TimeToFirstToken is the time from sending the request to the first
	// chunk that carries content.
	TimeToFirstToken time.Duration
	// Duration is the time from sending the request to [DONE].
	Duration time.Duration
	Usage    *Usage
	// FinishReason is the last finish_reason a chunk gave ("stop",
	// "length").
	FinishReason string
}

// ChatStream sends a streamed chat completion (with include_usage) and
// reads it to the end, measuring time to first token. The read is bounded
// by probes.MaxStreamBytes and by the request's token limit (a
// probes.StreamBudget): a server that streams on past them is an error
// wrapping probes.ErrTooLarge.
func (c *Client) ChatStream(ctx context.Context, req ChatRequest) (StreamResult, error) {
	req.Stream = true
	req.StreamOptions = &StreamOptions{IncludeUsage: true}
	u := c.url("/v1/chat/completions")
	start := c.now()
	resp, err := probes.PostStream(ctx, c.HTTP, u, req, "text/event-stream")
	if err != nil {
		return StreamResult{}, err
	}
	defer resp.Body.Close()
	var res StreamResult
	var sb strings.Builder
	budget := probes.StreamBudget{Tokens: req.MaxTokens}
	err = ReadStream(resp.Body, func(ch ChatChunk) error {
		if err := budget.Event("openai stream"); err != nil {
			return err
		}
		res.Chunks++
		if s := ch.Content(); s != "" {
			if res.TimeToFirstToken == 0 {
				res.TimeToFirstToken = c.now().Sub(start)
			}
			sb.WriteString(s)
		}
		if ch.Usage != nil {
			res.Usage = ch.Usage
		}
		for _, c := range ch.Choices {
			if c.FinishReason != nil && *c.FinishReason != "" {
				res.FinishReason = *c.FinishReason
			}
		}
		return nil
	})
	res.Content = sb.String()
	res.Duration = c.now().Sub(start)
	if err != nil {
		if ctx.Err() != nil {
			return res, fmt.Errorf("POST %s: %w", u, ctx.Err())
		}
		return res, fmt.Errorf("POST %s: %w", u, err)
	}
	return res, nil
}

// Embeddings sends POST /v1/embeddings.
func (c *Client) Embeddings(ctx context.Context, req EmbeddingsRequest) (EmbeddingsResponse, error) {
	b, err := probes.Fetch(ctx, c.HTTP, http.MethodPost, c.url("/v1/embeddings"), req)
	if err != nil {
		return EmbeddingsResponse{}, err
	}
	return DecodeEmbeddings(b)
}

// Detect asks the server what it is. It returns a Detection of kind vllm
// or openai; an error wrapping probes.ErrNoMatch when /v1/models is missing
// or is not an OpenAI model list; and transient errors (timeouts, resets,
// 5xx) unwrapped, for the caller to retry.
//
// An OpenAI model list says nothing of what a model does, and a model's
// name is never read for it. A server that lists one model serves that
// one, loaded: unless test is false, it is asked to embed one short input
// (and vLLM to rank one), and a model that answers it does not is taken
// for a generative one (chat and completion); vLLM runs one model with its
// adapters, so it is asked about its first. Another server that lists
// several may load a model for any request naming it (LM Studio, LocalAI, a
// router): it is not asked, and its models' capabilities stay unknown
// unless the target declares them.
func (c *Client) Detect(ctx context.Context, test bool) (probes.Detection, error) {
	list, err := c.Models(ctx)
	if err != nil {
		return probes.Detection{}, fmt.Errorf("openai: %w", probes.NoMatch(err))
	}
	d := probes.Detection{Kind: Flavor(list)}
	vllm := d.Kind == probes.KindVLLM
	if vllm {
		d.Server = "vllm"
		v, err := c.Version(ctx)
		switch {
		case err == nil:
			d.Version = v
		case !errors.Is(probes.NoMatch(err), probes.ErrNoMatch):
			return d, fmt.Errorf("vllm version: %w", err)
		}
	}
	// One vLLM engine runs one model for one task (generate, embed,
	// score), its LoRA adapters with it: its first model is asked.
	var caps []probes.Capability
	if test && len(list.Data) > 0 && (len(list.Data) == 1 || vllm) {
		if caps, err = c.modelCaps(ctx, list.Data[0].ID, vllm); err != nil {
			return d, fmt.Errorf("%s: %w", d.Kind, err)
		}
	}
	for _, m := range list.Data {
		d.Models = append(d.Models, probes.Model{
			ID:            m.ID,
			Capabilities:  caps,
			ContextLength: m.MaxModelLen,
			Loaded:        vllm, // vLLM lists only the models it serves
		})
	}
	return d.Finish(), nil
}

// modelCaps is what model does: embeddings when it embeds, rerank when
// rerank is set and it ranks, else chat and completion.
func (c *Client) modelCaps(ctx context.Context, model string, rerank bool) ([]probes.Capability, error) {
	ok, err := c.CanEmbed(ctx, model)
	if err != nil {
		return nil, fmt.Errorf("embeddings test of %s: %w", model, err)
	}
	if ok {
		return []probes.Capability{probes.CapEmbeddings}, nil
	}
	if rerank {
		ok, err := c.CanRerank(ctx, model)
		if err != nil {
			return nil, fmt.Errorf("rerank test of %s: %w", model, err)
		}
		if ok {
			return []probes.Capability{probes.CapRerank}, nil
		}
	}
	return []probes.Capability{probes.CapChat, probes.CapCompletion}, nil
}

// Flavor tells vLLM model lists from other OpenAI-compatible ones:
// KindVLLM or KindOpenAI.
func Flavor(l ModelList) probes.Kind {
	for _, m := range l.Data {
		switch {
		case m.OwnedBy == "vllm":
			return probes.KindVLLM
		case m.OwnedBy == "sglang":
			return probes.KindOpenAI // SGLang writes max_model_len too
		case m.MaxModelLen > 0:
			return probes.KindVLLM
		}
	}
	return probes.KindOpenAI
}

// Unsupported reports whether err is a server's answer that it does not
// serve what was asked: a 4xx (400 "does not support Embeddings API", 404
// no such endpoint or model) or a 501 (llama.cpp started without the
// option). Other errors (timeouts, resets, other 5xx) say nothing about
// what the server can do.
func Unsupported(err error) bool {
	var he *probes.HTTPError
	if !errors.As(err, &he) {
		return false
	}
	return he.Status >= 400 && he.Status < 500 || he.Status == http.StatusNotImplemented
}

// CanEmbed asks the server to embed one short input with model ("" for
// its default): true when it does, false when it answers that it does not
// (Unsupported), and an error when it did not say.
func (c *Client) CanEmbed(ctx context.Context, model string) (bool, error) {
	_, err := c.Embeddings(ctx, EmbeddingsRequest{Model: model, Input: []string{"ok"}})
	return capability(err)
}

// CanRerank asks the server to rank one short document with model ("" for
// its default) at POST /v1/rerank, the rerank API llama.cpp (with
// --reranking) and vLLM (score models) serve: true when it does, false
// when it answers that it does not, and an error when it did not say.
func (c *Client) CanRerank(ctx context.Context, model string) (bool, error) {
	return capability(c.Rerank(ctx, model))
}

// Rerank ranks one short document against a short query with model (""
// for the server's default) at POST /v1/rerank.
func (c *Client) Rerank(ctx context.Context, model string) error {
	body := map[string]any{"query": "ok", "documents": []string{"ok"}}
	if model != "" {
		body["model"] = model
	}
	b, err := probes.Fetch(ctx, c.HTTP, http.MethodPost, c.url("/v1/rerank"), body)
	if err != nil {
		return err
	}
	return DecodeRerank(b)
}

func capability(err error) (bool, error) {
	switch {
	case err == nil:
		return true, nil
	case Unsupported(err):
		return false, nil
	}
	var de *probes.DecodeError
	if errors.As(err, &de) {
		return false, nil // a 2xx of another shape is not that API
	}
	return false, err
}
