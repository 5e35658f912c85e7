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
func (c *Client) Detect(ctx context.Context) (probes.Detection, error) {
	list, err := c.Models(ctx)
	if err != nil {
		return probes.Detection{}, fmt.Errorf("openai: %w", probes.NoMatch(err))
	}
	if Flavor(list) == probes.KindVLLM {
		return c.describeVLLM(ctx, list)
	}
	d := probes.Detection{Kind: probes.KindOpenAI}
	for _, m := range list.Data {
		d.Models = append(d.Models, probes.Model{ID: m.ID, Capabilities: probes.GuessCapabilities(m.ID)})
	}
	return d.Finish(), nil
}

// Flavor tells vLLM model lists from other OpenAI-compatible ones:
// KindVLLM or KindOpenAI.
func Flavor(l ModelList) probes.Kind {
	for _, m := range l.Data {
		if m.OwnedBy == "vllm" || m.MaxModelLen > 0 {
			return probes.KindVLLM
		}
	}
	return probes.KindOpenAI
}

func (c *Client) describeVLLM(ctx context.Context, list ModelList) (probes.Detection, error) {
	d := probes.Detection{Kind: probes.KindVLLM, Server: "vllm"}
	v, err := c.Version(ctx)
	switch {
	case err == nil:
		d.Version = v
	case !errors.Is(probes.NoMatch(err), probes.ErrNoMatch):
		return d, fmt.Errorf("vllm version: %w", err)
	}
	for _, m := range list.Data {
		d.Models = append(d.Models, probes.Model{
			ID:            m.ID,
			Capabilities:  probes.GuessCapabilities(m.ID),
			ContextLength: m.MaxModelLen,
			Loaded:        true, // vLLM lists only the models it serves
		})
	}
	return d.Finish(), nil
}
