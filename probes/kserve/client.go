package kserve

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"

	"github.com/vitals-dev/vitals/probes"
)

// Client talks to one KServe v2 / Triton server. It is safe for concurrent
// use.
type Client struct {
	// HTTP sends the requests; nil means http.DefaultClient.
	HTTP *http.Client
	// BaseURL is the server root ("http://127.0.0.1:8000").
	BaseURL string
	// Models names models to describe when the server cannot list them
	// (KServe runtimes without Triton's repository index).
	Models []string
}

// New returns a client for baseURL.
func New(client *http.Client, baseURL string) *Client {
	return &Client{HTTP: client, BaseURL: baseURL}
}

func (c *Client) url(path string) string { return probes.JoinURL(c.BaseURL, path) }

func modelPath(m string, rest string) string { return "/v2/models/" + url.PathEscape(m) + rest }

// Server fetches GET /v2.
func (c *Client) Server(ctx context.Context) (ServerMetadata, error) {
	b, err := probes.Fetch(ctx, c.HTTP, http.MethodGet, c.url("/v2"), nil)
	if err != nil {
		return ServerMetadata{}, err
	}
	return DecodeServerMetadata(b)
}

// Live checks GET /v2/health/live: nil when live.
func (c *Client) Live(ctx context.Context) error {
	_, err := probes.Fetch(ctx, c.HTTP, http.MethodGet, c.url("/v2/health/live"), nil)
	return err
}

// Ready checks GET /v2/health/ready: nil when ready.
func (c *Client) Ready(ctx context.Context) error {
	_, err := probes.Fetch(ctx, c.HTTP, http.MethodGet, c.url("/v2/health/ready"), nil)
	return err
}

// ModelReady checks GET /v2/models/{m}/ready: nil when ready.
func (c *Client) ModelReady(ctx context.Context, model string) error {
	_, err := probes.Fetch(ctx, c.HTTP, http.MethodGet, c.url(modelPath(model, "/ready")), nil)
	return err
}

// Model fetches GET /v2/models/{m}.
func (c *Client) Model(ctx context.Context, model string) (ModelMetadata, error) {
	b, err := probes.Fetch(ctx, c.HTTP, http.MethodGet, c.url(modelPath(model, "")), nil)
	if err != nil {
		return ModelMetadata{}, err
	}
	return DecodeModelMetadata(b)
}

// Index fetches Triton's POST /v2/repository/index.
func (c *Client) Index(ctx context.Context) ([]IndexEntry, error) {
	b, err := probes.Fetch(ctx, c.HTTP, http.MethodPost, c.url("/v2/repository/index"), map[string]any{})
	if err != nil {
		return nil, err
	}
	return DecodeIndex(b)
}

// Infer sends POST /v2/models/{m}/infer.
func (c *Client) Infer(ctx context.Context, model string, req InferRequest) (InferResponse, error) {
	b, err := probes.Fetch(ctx, c.HTTP, http.MethodPost, c.url(modelPath(model, "/infer")), req)
	if err != nil {
		return InferResponse{}, err
	}
	return DecodeInfer(b)
}

// Detect asks GET /v2 what the server is (an error wrapping
// probes.ErrNoMatch when it is not a v2 server), lists the models from the
// repository index or c.Models, and describes each from its metadata and
// readiness. Transient errors are returned unwrapped.
func (c *Client) Detect(ctx context.Context) (probes.Detection, error) {
	meta, err := c.Server(ctx)
	if err != nil {
		return probes.Detection{}, fmt.Errorf("kserve: %w", probes.NoMatch(err))
	}
	d := probes.Detection{Kind: probes.KindKServe, Server: meta.Name, Version: meta.Version}
	names := append([]string(nil), c.Models...)
	idx, err := c.Index(ctx)
	switch {
	case err == nil:
		for _, e := range idx {
			if !slices.Contains(names, e.Name) {
				names = append(names, e.Name)
			}
		}
	case !errors.Is(probes.NoMatch(err), probes.ErrNoMatch):
		return d, fmt.Errorf("kserve index: %w", err)
	}
	for _, n := range names {
		m := probes.Model{ID: n}
		md, err := c.Model(ctx, n)
		switch {
		case err == nil:
			m.Capabilities = md.Caps()
		case !errors.Is(probes.NoMatch(err), probes.ErrNoMatch):
			return d, fmt.Errorf("kserve model %s: %w", n, err)
		}
		err = c.ModelReady(ctx, n)
		switch {
		case err == nil:
			m.Loaded = true
		case probes.Classify(err) == probes.ClassCanceled, probes.Classify(err) == probes.ClassTimeout:
			return d, fmt.Errorf("kserve model %s ready: %w", n, err)
		}
		d.Models = append(d.Models, m)
	}
	return d.Finish(), nil
}
