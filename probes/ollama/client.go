package ollama

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/vitals-dev/vitals/probes"
)

// DefaultMaxShow bounds how many models Detect asks /api/show about.
const DefaultMaxShow = 32

// Client talks to one Ollama server. It is safe for concurrent use.
type Client struct {
	// HTTP sends the requests; nil means http.DefaultClient.
	HTTP *http.Client
	// BaseURL is the server root ("http://127.0.0.1:11434").
	BaseURL string
	// MaxShow bounds the /api/show calls of Detect; 0 means DefaultMaxShow.
	MaxShow int
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

// Version fetches GET /api/version.
func (c *Client) Version(ctx context.Context) (string, error) {
	b, err := probes.Fetch(ctx, c.HTTP, http.MethodGet, c.url("/api/version"), nil)
	if err != nil {
		return "", err
	}
	return DecodeVersion(b)
}

// Tags fetches GET /api/tags, the models on disk.
func (c *Client) Tags(ctx context.Context) ([]TagModel, error) {
	b, err := probes.Fetch(ctx, c.HTTP, http.MethodGet, c.url("/api/tags"), nil)
	if err != nil {
		return nil, err
	}
	return DecodeTags(b)
}

// PS fetches GET /api/ps, the models loaded in memory.
func (c *Client) PS(ctx context.Context) ([]PSModel, error) {
	b, err := probes.Fetch(ctx, c.HTTP, http.MethodGet, c.url("/api/ps"), nil)
	if err != nil {
		return nil, err
	}
	return DecodePS(b)
}

// Show sends POST /api/show for model.
func (c *Client) Show(ctx context.Context, model string) (Show, error) {
	b, err := probes.Fetch(ctx, c.HTTP, http.MethodPost, c.url("/api/show"), map[string]string{"model": model})
	if err != nil {
		return Show{}, err
	}
	return DecodeShow(b)
}

// Embed sends POST /api/embed.
func (c *Client) Embed(ctx context.Context, req EmbedRequest) (EmbedResponse, error) {
	b, err := probes.Fetch(ctx, c.HTTP, http.MethodPost, c.url("/api/embed"), req)
	if err != nil {
		return EmbedResponse{}, err
	}
	return DecodeEmbed(b)
}

// StreamResult summarises a streamed chat.
type StreamResult struct {
	Content          string
	Chunks           int
	TimeToFirstToken time.Duration
	Duration         time.Duration
	// Final is the last object, with done true and the counts.
	Final Response
}

// ChatStream sends a streamed POST /api/chat and reads it to the end,
// measuring time to first token. The read is bounded by
// probes.MaxStreamBytes and by the num_predict option (a
// probes.StreamBudget): a server that streams on past them is an error
// wrapping probes.ErrTooLarge.
func (c *Client) ChatStream(ctx context.Context, req ChatRequest) (StreamResult, error) {
	t := true
	req.Stream = &t
	u := c.url("/api/chat")
	start := c.now()
	resp, err := probes.PostStream(ctx, c.HTTP, u, req, "")
	if err != nil {
		return StreamResult{}, err
	}
	defer resp.Body.Close()
	var res StreamResult
	var sb strings.Builder
	budget := probes.StreamBudget{Tokens: numPredict(req.Options)}
	err = ReadStream(resp.Body, func(r Response) error {
		if err := budget.Event("ollama stream"); err != nil {
			return err
		}
		res.Chunks++
		if s := r.Text(); s != "" {
			if res.TimeToFirstToken == 0 {
				res.TimeToFirstToken = c.now().Sub(start)
			}
			sb.WriteString(s)
		}
		if r.Done {
			res.Final = r
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

// Detect asks the server what it is. /api/version must answer with a
// version, or the error wraps probes.ErrNoMatch; then /api/tags lists the
// models, /api/ps says which are loaded and their memory, and /api/show
// gives each model's capabilities and context length. Transient errors are
// returned unwrapped for the caller to retry.
func (c *Client) Detect(ctx context.Context) (probes.Detection, error) {
	v, err := c.Version(ctx)
	if err != nil {
		return probes.Detection{}, fmt.Errorf("ollama: %w", probes.NoMatch(err))
	}
	d := probes.Detection{Kind: probes.KindOllama, Server: "ollama", Version: v}
	tags, err := c.Tags(ctx)
	if err != nil {
		return d, fmt.Errorf("ollama tags: %w", err)
	}
	loaded := map[string]PSModel{}
	ps, err := c.PS(ctx)
	switch {
	case err == nil:
		for _, m := range ps {
			loaded[m.Name] = m
		}
	case !errors.Is(probes.NoMatch(err), probes.ErrNoMatch):
		return d, fmt.Errorf("ollama ps: %w", err)
	}
	maxShow := c.MaxShow
	if maxShow <= 0 {
		maxShow = DefaultMaxShow
	}
	for i, t := range tags {
		name := t.Name
		if name == "" {
			name = t.Model
		}
		// A model /api/show was not asked about, or could not say, keeps
		// no capabilities: its name is no evidence.
		m := probes.Model{ID: name, SizeBytes: t.Size}
		if i < maxShow {
			s, err := c.Show(ctx, name)
			switch {
			case err == nil:
				m.Capabilities = s.Caps()
				m.ContextLength = s.ContextLength()
			case !errors.Is(probes.NoMatch(err), probes.ErrNoMatch):
				return d, fmt.Errorf("ollama show %s: %w", name, err)
			}
		}
		if p, ok := loaded[name]; ok {
			m.Loaded = true
			m.MemoryBytes = p.Size
			if p.ContextLength > 0 {
				m.ContextLength = p.ContextLength
			}
		}
		d.Models = append(d.Models, m)
	}
	return d.Finish(), nil
}

// numPredict returns the num_predict option, the token limit of a
// generation, or 0 when it is not set.
func numPredict(opts map[string]any) int {
	switch v := opts["num_predict"].(type) {
	case int:
		return v
	case int64:
		return int(v)
	case float64:
		return int(v)
	}
	return 0
}
