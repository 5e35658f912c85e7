package ollama

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/vitals-dev/vitals/probes"
)

// DecodeVersion decodes GET /api/version, {"version":"0.24.0"}.
func DecodeVersion(b []byte) (string, error) {
	var v struct {
		Version string `json:"version"`
	}
	if err := probes.DecodeJSON("ollama /api/version", b, &v); err != nil {
		return "", err
	}
	if v.Version == "" {
		return "", &probes.DecodeError{What: "ollama /api/version", Err: errors.New("no version")}
	}
	return v.Version, nil
}

// Details is a model's "details" block.
type Details struct {
	ParentModel       string   `json:"parent_model"`
	Format            string   `json:"format"`
	Family            string   `json:"family"`
	Families          []string `json:"families"`
	ParameterSize     string   `json:"parameter_size"`
	QuantizationLevel string   `json:"quantization_level"`
}

// TagModel is one model of GET /api/tags.
type TagModel struct {
	Name       string  `json:"name"`
	Model      string  `json:"model"`
	ModifiedAt string  `json:"modified_at"`
	Size       int64   `json:"size"`
	Digest     string  `json:"digest"`
	Details    Details `json:"details"`
}

// DecodeTags decodes GET /api/tags; it must have a "models" list.
func DecodeTags(b []byte) ([]TagModel, error) {
	var v struct {
		Models *[]TagModel `json:"models"`
	}
	if err := probes.DecodeJSON("ollama /api/tags", b, &v); err != nil {
		return nil, err
	}
	if v.Models == nil {
		return nil, &probes.DecodeError{What: "ollama /api/tags", Err: errors.New(`no "models" list`)}
	}
	for i, m := range *v.Models {
		if m.Name == "" && m.Model == "" {
			return nil, &probes.DecodeError{What: "ollama /api/tags", Err: fmt.Errorf("model %d has no name", i)}
		}
	}
	return *v.Models, nil
}

// PSModel is one loaded model of GET /api/ps.
type PSModel struct {
	Name          string  `json:"name"`
	Model         string  `json:"model"`
	Size          int64   `json:"size"`
	Digest        string  `json:"digest"`
	Details       Details `json:"details"`
	ExpiresAt     string  `json:"expires_at"`
	SizeVRAM      int64   `json:"size_vram"`
	ContextLength int64   `json:"context_length"`
}

// DecodePS decodes GET /api/ps; it must have a "models" list.
func DecodePS(b []byte) ([]PSModel, error) {
	var v struct {
		Models *[]PSModel `json:"models"`
	}
	if err := probes.DecodeJSON("ollama /api/ps", b, &v); err != nil {
		return nil, err
	}
	if v.Models == nil {
		return nil, &probes.DecodeError{What: "ollama /api/ps", Err: errors.New(`no "models" list`)}
	}
	return *v.Models, nil
}

// Show is the part of POST /api/show that probes use.
type Show struct {
	Details      Details        `json:"details"`
	ModelInfo    map[string]any `json:"model_info"`
	Capabilities []string       `json:"capabilities"`
	Template     string         `json:"template"`
	ModifiedAt   string         `json:"modified_at"`
	Modelfile    string         `json:"modelfile"`
}

// blobRE is the FROM line of a modelfile that names a local weights blob.
var blobRE = regexp.MustCompile(`(?m)^FROM \S*/blobs/sha256-([0-9a-fA-F]{64})\s*$`)

// BlobDigest is the digest of the model's weights blob, as "sha256:<hex>",
// from the FROM line of the modelfile Ollama shows ("FROM
// <models>/blobs/sha256-<hex>"); "" when the modelfile names none. Runners
// are started with that blob, and /api/ps lists the manifest's digest.
func (s Show) BlobDigest() string {
	m := blobRE.FindStringSubmatch(s.Modelfile)
	if m == nil {
		return ""
	}
	return "sha256:" + strings.ToLower(m[1])
}

// DecodeShow decodes POST /api/show. Ollama before 0.6 sends no
// capabilities; that is not an error.
func DecodeShow(b []byte) (Show, error) {
	var s Show
	if err := probes.DecodeJSON("ollama /api/show", b, &s); err != nil {
		return Show{}, err
	}
	if s.ModelInfo == nil && s.Capabilities == nil && s.Details.Format == "" && s.Template == "" {
		return Show{}, &probes.DecodeError{What: "ollama /api/show", Err: errors.New("no model_info, capabilities, details or template")}
	}
	return s, nil
}

// ContextLength returns "<architecture>.context_length" from model_info,
// or 0.
func (s Show) ContextLength() int64 {
	arch, _ := s.ModelInfo["general.architecture"].(string)
	if arch == "" {
		return 0
	}
	f, ok := s.ModelInfo[arch+".context_length"].(float64)
	if !ok || f <= 0 || f > 1<<40 {
		return 0
	}
	return int64(f)
}

// Caps maps Ollama's capability names to Vitals capabilities: completion
// is chat and completion, insert is completion, embedding is embeddings,
// vision and tools are themselves; others (thinking) are dropped. Ollama
// before 0.6 sends no capabilities list: then the model's architecture
// says it, a BERT family embeds and any other generates, as that Ollama
// served them.
func (s Show) Caps() []probes.Capability {
	if len(s.Capabilities) == 0 {
		if strings.Contains(strings.ToLower(s.Details.Family), "bert") {
			return []probes.Capability{probes.CapEmbeddings}
		}
		return []probes.Capability{probes.CapChat, probes.CapCompletion}
	}
	var caps []probes.Capability
	for _, c := range s.Capabilities {
		switch c {
		case "completion":
			caps = append(caps, probes.CapChat, probes.CapCompletion)
		case "insert":
			caps = append(caps, probes.CapCompletion)
		case "embedding":
			caps = append(caps, probes.CapEmbeddings)
		case "vision":
			caps = append(caps, probes.CapVision)
		case "tools":
			caps = append(caps, probes.CapTools)
		}
	}
	return probes.SortCapabilities(caps)
}

// Message is one chat message.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// ChatRequest is the body of POST /api/chat.
type ChatRequest struct {
	Model    string         `json:"model"`
	Messages []Message      `json:"messages"`
	Stream   *bool          `json:"stream,omitempty"`
	Think    *bool          `json:"think,omitempty"`
	Options  map[string]any `json:"options,omitempty"`
	// KeepAlive is how long the model stays loaded after the request:
	// a duration string, or a negative number for ever; nil leaves the
	// server's own.
	KeepAlive any `json:"keep_alive,omitempty"`
}

// Response is one object of /api/generate or /api/chat: the whole answer
// when not streamed, one chunk of the NDJSON stream otherwise. Durations
// are nanoseconds.
type Response struct {
	Model              string   `json:"model"`
	CreatedAt          string   `json:"created_at"`
	Response           string   `json:"response,omitempty"`
	Message            *Message `json:"message,omitempty"`
	Done               bool     `json:"done"`
	DoneReason         string   `json:"done_reason,omitempty"`
	TotalDuration      int64    `json:"total_duration,omitempty"`
	LoadDuration       int64    `json:"load_duration,omitempty"`
	PromptEvalCount    int64    `json:"prompt_eval_count,omitempty"`
	PromptEvalDuration int64    `json:"prompt_eval_duration,omitempty"`
	EvalCount          int64    `json:"eval_count,omitempty"`
	EvalDuration       int64    `json:"eval_duration,omitempty"`
	Error              string   `json:"error,omitempty"`
}

// Text returns the text the object carries.
func (r Response) Text() string {
	if r.Message != nil {
		return r.Message.Content
	}
	return r.Response
}

// ReadStream reads an NDJSON stream from /api/generate or /api/chat, line
// by line with probes.ReadLines, and calls fn for each object until one
// has done true. A stream that ends before that, a line that is not an
// object, or an {"error": ...} line is an error.
func ReadStream(r io.Reader, fn func(Response) error) error {
	done := false
	err := probes.ReadLines(r, func(line []byte) error {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			return nil
		}
		var resp Response
		if err := json.Unmarshal(line, &resp); err != nil {
			return &probes.DecodeError{What: "ollama stream", Err: err}
		}
		if resp.Error != "" {
			return &probes.DecodeError{What: "ollama stream", Err: fmt.Errorf("server error: %s", resp.Error)}
		}
		if err := fn(resp); err != nil {
			return err
		}
		if resp.Done {
			done = true
			return probes.ErrStopLines
		}
		return nil
	})
	var de *probes.DecodeError
	switch {
	case errors.As(err, &de):
		return err
	case err != nil:
		return fmt.Errorf("read stream: %w", err)
	case !done:
		return &probes.DecodeError{What: "ollama stream", Err: io.ErrUnexpectedEOF}
	}
	return nil
}

// EmbedRequest is the body of POST /api/embed.
type EmbedRequest struct {
	Model     string   `json:"model"`
	Input     []string `json:"input"`
	KeepAlive any      `json:"keep_alive,omitempty"`
}

// EmbedResponse is the body of an /api/embed response.
type EmbedResponse struct {
	Model           string      `json:"model"`
	Embeddings      [][]float64 `json:"embeddings"`
	TotalDuration   int64       `json:"total_duration,omitempty"`
	LoadDuration    int64       `json:"load_duration,omitempty"`
	PromptEvalCount int64       `json:"prompt_eval_count,omitempty"`
}

// DecodeEmbed decodes /api/embed; it must hold one non-empty vector.
func DecodeEmbed(b []byte) (EmbedResponse, error) {
	var r EmbedResponse
	if err := probes.DecodeJSON("ollama /api/embed", b, &r); err != nil {
		return EmbedResponse{}, err
	}
	if len(r.Embeddings) == 0 || len(r.Embeddings[0]) == 0 {
		return EmbedResponse{}, &probes.DecodeError{What: "ollama /api/embed", Err: errors.New("no vectors")}
	}
	return r, nil
}
