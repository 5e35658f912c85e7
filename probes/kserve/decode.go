package kserve

import (
	"errors"
	"fmt"
	"strings"

	"github.com/vitals-dev/vitals/probes"
)

// ServerMetadata is the body of GET /v2.
type ServerMetadata struct {
	Name       string   `json:"name"`
	Version    string   `json:"version"`
	Extensions []string `json:"extensions"`
}

// DecodeServerMetadata decodes GET /v2; it needs a name and a version.
func DecodeServerMetadata(b []byte) (ServerMetadata, error) {
	var m ServerMetadata
	if err := probes.DecodeJSON("kserve /v2", b, &m); err != nil {
		return ServerMetadata{}, err
	}
	if m.Name == "" || m.Version == "" {
		return ServerMetadata{}, &probes.DecodeError{What: "kserve /v2", Err: errors.New("no name or version")}
	}
	return m, nil
}

// Tensor describes one input or output of a model.
type Tensor struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

// ModelMetadata is the body of GET /v2/models/{m}.
type ModelMetadata struct {
	Name     string   `json:"name"`
	Versions []string `json:"versions,omitempty"`
	Platform string   `json:"platform"`
	Inputs   []Tensor `json:"inputs"`
	Outputs  []Tensor `json:"outputs"`
}

// DecodeModelMetadata decodes GET /v2/models/{m}; it needs a name.
func DecodeModelMetadata(b []byte) (ModelMetadata, error) {
	var m ModelMetadata
	if err := probes.DecodeJSON("kserve model metadata", b, &m); err != nil {
		return ModelMetadata{}, err
	}
	if m.Name == "" {
		return ModelMetadata{}, &probes.DecodeError{What: "kserve model metadata", Err: errors.New("no name")}
	}
	return m, nil
}

// Caps says what the model can do from the tensors its metadata names,
// never from the model's name: text_input or text_output is a generative
// model (completion); an output named like an embedding is embeddings;
// logits, scores or probabilities are classification. A tensor model that
// says nothing of these has no capability.
func (m ModelMetadata) Caps() []probes.Capability {
	names := func(ts []Tensor) string {
		var sb strings.Builder
		for _, t := range ts {
			sb.WriteString(strings.ToLower(t.Name))
			sb.WriteByte(' ')
		}
		return sb.String()
	}
	in, out := names(m.Inputs), names(m.Outputs)
	switch {
	case strings.Contains(in, "text_input") || strings.Contains(out, "text_output"):
		return []probes.Capability{probes.CapCompletion}
	case strings.Contains(out, "embed") || strings.Contains(out, "pooler_output"):
		return []probes.Capability{probes.CapEmbeddings}
	case strings.Contains(out, "logits") || strings.Contains(out, "prob") || strings.Contains(out, "score") || strings.Contains(out, "label"):
		return []probes.Capability{probes.CapClassification}
	}
	return nil
}

// IndexEntry is one model of Triton's POST /v2/repository/index.
type IndexEntry struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	State   string `json:"state,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// DecodeIndex decodes Triton's repository index, a JSON list.
func DecodeIndex(b []byte) ([]IndexEntry, error) {
	var v []IndexEntry
	if err := probes.DecodeJSON("triton repository index", b, &v); err != nil {
		return nil, err
	}
	for i, e := range v {
		if e.Name == "" {
			return nil, &probes.DecodeError{What: "triton repository index", Err: fmt.Errorf("entry %d has no name", i)}
		}
	}
	return v, nil
}

// InferRequest is the body of POST /v2/models/{m}/infer.
type InferRequest struct {
	ID      string        `json:"id,omitempty"`
	Inputs  []InferTensor `json:"inputs"`
	Outputs []struct {
		Name string `json:"name"`
	} `json:"outputs,omitempty"`
}

// InferTensor is one tensor with data.
type InferTensor struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
	Data     []any   `json:"data"`
}

// InferResponse is the body of an inference answer.
type InferResponse struct {
	ModelName    string        `json:"model_name"`
	ModelVersion string        `json:"model_version,omitempty"`
	ID           string        `json:"id,omitempty"`
	Outputs      []InferTensor `json:"outputs"`
}

// DecodeInfer decodes an inference answer; it needs at least one output.
func DecodeInfer(b []byte) (InferResponse, error) {
	var r InferResponse
	if err := probes.DecodeJSON("kserve infer", b, &r); err != nil {
		return InferResponse{}, err
	}
	if len(r.Outputs) == 0 {
		return InferResponse{}, &probes.DecodeError{What: "kserve infer", Err: errors.New("no outputs")}
	}
	return r, nil
}
