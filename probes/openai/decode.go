package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/vitals-dev/vitals/probes"
)

// ModelList is the body of GET /v1/models.
type ModelList struct {
	Object string       `json:"object"`
	Data   []ModelEntry `json:"data"`
}

// ModelEntry is one model in /v1/models. OwnedBy is "vllm" on vLLM (and
// "llamacpp" on llama.cpp, whose own fields probes/llamacpp decodes);
// MaxModelLen is vLLM's context length.
type ModelEntry struct {
	ID          string   `json:"id"`
	Object      string   `json:"object"`
	Created     int64    `json:"created"`
	OwnedBy     string   `json:"owned_by"`
	Root        string   `json:"root,omitempty"`
	Parent      *string  `json:"parent,omitempty"`
	MaxModelLen int64    `json:"max_model_len,omitempty"`
	Aliases     []string `json:"aliases,omitempty"`
}

// DecodeModels decodes a /v1/models body. A body without a "data" list is
// not an OpenAI model list and is an error.
func DecodeModels(b []byte) (ModelList, error) {
	var raw struct {
		ModelList
		Data *[]ModelEntry `json:"data"`
	}
	if err := probes.DecodeJSON("openai /v1/models", b, &raw); err != nil {
		return ModelList{}, err
	}
	if raw.Data == nil {
		return ModelList{}, &probes.DecodeError{What: "openai /v1/models", Err: errors.New(`no "data" list`)}
	}
	l := raw.ModelList
	l.Data = *raw.Data
	for i, m := range l.Data {
		if m.ID == "" {
			return ModelList{}, &probes.DecodeError{What: "openai /v1/models", Err: fmt.Errorf("model %d has no id", i)}
		}
	}
	return l, nil
}

// DecodeVersion decodes vLLM's GET /version, {"version":"0.6.3"}.
func DecodeVersion(b []byte) (string, error) {
	var v struct {
		Version string `json:"version"`
	}
	if err := probes.DecodeJSON("vllm /version", b, &v); err != nil {
		return "", err
	}
	if v.Version == "" {
		return "", &probes.DecodeError{What: "vllm /version", Err: errors.New("no version")}
	}
	return v.Version, nil
}

// Message is one chat message.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Usage is the token accounting of a response.
type Usage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
}

// ChatRequest is the body of POST /v1/chat/completions.
type ChatRequest struct {
	Model         string         `json:"model"`
	Messages      []Message      `json:"messages"`
	MaxTokens     int            `json:"max_tokens,omitempty"`
	Temperature   *float64       `json:"temperature,omitempty"`
	Stream        bool           `json:"stream,omitempty"`
	StreamOptions *StreamOptions `json:"stream_options,omitempty"`
	// ChatTemplateKwargs go to the chat template of llama.cpp and vLLM;
	// {"enable_thinking": false} turns reasoning off.
	ChatTemplateKwargs map[string]any `json:"chat_template_kwargs,omitempty"`
}

// StreamOptions asks a streaming server for a final usage chunk.
type StreamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// ChatChunk is one event of a streamed chat completion.
type ChatChunk struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Model   string `json:"model"`
	Choices []struct {
		Index int `json:"index"`
		Delta struct {
			Role    string  `json:"role,omitempty"`
			Content *string `json:"content"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *Usage `json:"usage,omitempty"`
}

// Content returns the text this chunk adds.
func (c ChatChunk) Content() string {
	var s string
	for _, ch := range c.Choices {
		if ch.Delta.Content != nil {
			s += *ch.Delta.Content
		}
	}
	return s
}

// ReadStream reads a server-sent event stream of chat chunks from r, line
// by line with probes.ReadLines, and calls fn for each chunk until
// "data: [DONE]" or the end of r. A stream that ends without [DONE] is an
// error, as is a data line that is not a chunk. An "error" event object is
// returned as an error.
func ReadStream(r io.Reader, fn func(ChatChunk) error) error {
	done := false
	err := probes.ReadLines(r, func(line []byte) error {
		data, ok := bytes.CutPrefix(line, []byte("data:"))
		if !ok {
			return nil // blank separators, comments, event: and id: lines
		}
		data = bytes.TrimSpace(data)
		if bytes.Equal(data, []byte("[DONE]")) {
			done = true
			return probes.ErrStopLines
		}
		var probe struct {
			Error json.RawMessage `json:"error"`
		}
		if err := json.Unmarshal(data, &probe); err != nil {
			return &probes.DecodeError{What: "openai stream chunk", Err: err}
		}
		if len(probe.Error) > 0 && !bytes.Equal(probe.Error, []byte("null")) {
			return &probes.DecodeError{What: "openai stream", Err: fmt.Errorf("server error event: %s", probe.Error)}
		}
		var c ChatChunk
		if err := json.Unmarshal(data, &c); err != nil {
			return &probes.DecodeError{What: "openai stream chunk", Err: err}
		}
		return fn(c)
	})
	var de *probes.DecodeError
	switch {
	case errors.As(err, &de):
		return err
	case err != nil:
		return fmt.Errorf("read stream: %w", err)
	case !done:
		return &probes.DecodeError{What: "openai stream", Err: io.ErrUnexpectedEOF}
	}
	return nil
}

// EmbeddingsRequest is the body of POST /v1/embeddings.
type EmbeddingsRequest struct {
	Model string   `json:"model"`
	Input []string `json:"input"`
}

// EmbeddingsResponse is the body of an embeddings response.
type EmbeddingsResponse struct {
	Object string `json:"object"`
	Model  string `json:"model"`
	Data   []struct {
		Index     int       `json:"index"`
		Object    string    `json:"object"`
		Embedding []float64 `json:"embedding"`
	} `json:"data"`
	Usage *Usage `json:"usage,omitempty"`
}

// DecodeEmbeddings decodes an embeddings response; it must hold at least
// one non-empty vector.
func DecodeEmbeddings(b []byte) (EmbeddingsResponse, error) {
	var r EmbeddingsResponse
	if err := probes.DecodeJSON("openai embeddings", b, &r); err != nil {
		return EmbeddingsResponse{}, err
	}
	if len(r.Data) == 0 || len(r.Data[0].Embedding) == 0 {
		return EmbeddingsResponse{}, &probes.DecodeError{What: "openai embeddings", Err: errors.New("no vectors")}
	}
	return r, nil
}

// DecodeRerank checks a POST /v1/rerank body: a "results" list of at least
// one ranked document.
func DecodeRerank(b []byte) error {
	var r struct {
		Results []struct {
			Index          *int     `json:"index"`
			RelevanceScore *float64 `json:"relevance_score"`
		} `json:"results"`
	}
	if err := probes.DecodeJSON("rerank", b, &r); err != nil {
		return err
	}
	if len(r.Results) == 0 || r.Results[0].Index == nil || r.Results[0].RelevanceScore == nil {
		return &probes.DecodeError{What: "rerank", Err: errors.New("no ranked results")}
	}
	return nil
}
