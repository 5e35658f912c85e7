package hf

import (
	"context"
	"fmt"
	"net/http"

	"github.com/vitals-dev/vitals/probes"
)

// Client talks to one TGI or TEI server. It is safe for concurrent use.
type Client struct {
	// HTTP sends the requests; nil means http.DefaultClient.
	HTTP *http.Client
	// BaseURL is the server root ("http://127.0.0.1:8080").
	BaseURL string
}

// New returns a client for baseURL.
func New(client *http.Client, baseURL string) *Client {
	return &Client{HTTP: client, BaseURL: baseURL}
}

func (c *Client) url(path string) string { return probes.JoinURL(c.BaseURL, path) }

// Info fetches GET /info.
func (c *Client) Info(ctx context.Context) (Info, error) {
	b, err := probes.Fetch(ctx, c.HTTP, http.MethodGet, c.url("/info"), nil)
	if err != nil {
		return Info{}, err
	}
	return DecodeInfo(b)
}

// Health fetches GET /health: nil when the server is ready, an
// *probes.HTTPError (503) while it loads or when it is unhealthy.
func (c *Client) Health(ctx context.Context) error {
	_, err := probes.Fetch(ctx, c.HTTP, http.MethodGet, c.url("/health"), nil)
	return err
}

// Generate sends TGI's POST /generate.
func (c *Client) Generate(ctx context.Context, req GenerateRequest) (GenerateResponse, error) {
	b, err := probes.Fetch(ctx, c.HTTP, http.MethodPost, c.url("/generate"), req)
	if err != nil {
		return GenerateResponse{}, err
	}
	return DecodeGenerate(b)
}

// Embed sends TEI's POST /embed.
func (c *Client) Embed(ctx context.Context, inputs []string) ([][]float64, error) {
	b, err := probes.Fetch(ctx, c.HTTP, http.MethodPost, c.url("/embed"), map[string]any{"inputs": inputs})
	if err != nil {
		return nil, err
	}
	return DecodeEmbed(b)
}

// Rerank sends TEI's POST /rerank.
func (c *Client) Rerank(ctx context.Context, query string, texts []string) ([]Rank, error) {
	b, err := probes.Fetch(ctx, c.HTTP, http.MethodPost, c.url("/rerank"), map[string]any{"query": query, "texts": texts})
	if err != nil {
		return nil, err
	}
	return DecodeRerank(b)
}

// Detect asks GET /info what the server is: a Detection of kind tgi or tei
// with its one model, or an error wrapping probes.ErrNoMatch when /info is
// missing or of another shape. Transient errors are returned unwrapped.
func (c *Client) Detect(ctx context.Context) (probes.Detection, error) {
	info, err := c.Info(ctx)
	if err != nil {
		return probes.Detection{}, fmt.Errorf("hf: %w", probes.NoMatch(err))
	}
	d := probes.Detection{Kind: info.Kind(), Version: info.Version}
	switch d.Kind {
	case probes.KindTGI:
		d.Server = info.Router
		if d.Server == "" {
			d.Server = "text-generation-inference"
		}
	case probes.KindTEI:
		d.Server = "text-embeddings-inference"
	}
	m := probes.Model{ID: info.ModelID, Capabilities: info.Caps(), ContextLength: info.ContextLength()}
	if err := c.Health(ctx); err == nil {
		m.Loaded = true
	} else if probes.Classify(err) == probes.ClassCanceled {
		return d, fmt.Errorf("hf health: %w", err)
	}
	d.Models = []probes.Model{m}
	return d.Finish(), nil
}
