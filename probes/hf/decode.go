package hf

import (
	"encoding/json"
	"errors"
	"strings"

	"github.com/vitals-dev/vitals/probes"
)

// Info is the union of TGI's and TEI's GET /info.
type Info struct {
	ModelID          string  `json:"model_id"`
	ModelSHA         *string `json:"model_sha"`
	ModelDType       string  `json:"model_dtype,omitempty"`
	ModelDeviceType  string  `json:"model_device_type,omitempty"`
	ModelPipelineTag *string `json:"model_pipeline_tag,omitempty"`
	Version          string  `json:"version"`
	SHA              *string `json:"sha"`
	DockerLabel      *string `json:"docker_label"`

	// TGI.
	Router                string `json:"router,omitempty"`
	MaxInputTokens        int64  `json:"max_input_tokens,omitempty"`
	MaxTotalTokens        int64  `json:"max_total_tokens,omitempty"`
	MaxConcurrentRequests int64  `json:"max_concurrent_requests,omitempty"`

	// TEI.
	ModelType      map[string]json.RawMessage `json:"model_type,omitempty"`
	MaxInputLength int64                      `json:"max_input_length,omitempty"`
	MaxBatchTokens int64                      `json:"max_batch_tokens,omitempty"`
}

// Kind returns KindTEI when the info has a model_type, KindTGI when it has
// a router or max_input_tokens, and KindUnknown otherwise.
func (i Info) Kind() probes.Kind {
	switch {
	case len(i.ModelType) > 0:
		return probes.KindTEI
	case i.Router != "" || i.MaxInputTokens > 0 || i.MaxTotalTokens > 0:
		return probes.KindTGI
	}
	return probes.KindUnknown
}

// Caps returns what the model can do: for TEI from model_type (embedding,
// classifier, reranker), for TGI chat and completion, plus vision for an
// image-text-to-text pipeline.
func (i Info) Caps() []probes.Capability {
	var caps []probes.Capability
	switch i.Kind() {
	case probes.KindTEI:
		for t := range i.ModelType {
			switch strings.ToLower(t) {
			case "embedding":
				caps = append(caps, probes.CapEmbeddings)
			case "classifier":
				caps = append(caps, probes.CapClassification)
			case "reranker":
				caps = append(caps, probes.CapRerank)
			}
		}
	case probes.KindTGI:
		caps = append(caps, probes.CapChat, probes.CapCompletion)
		if i.ModelPipelineTag != nil && strings.Contains(*i.ModelPipelineTag, "image") {
			caps = append(caps, probes.CapVision)
		}
	}
	return probes.SortCapabilities(caps)
}

// ContextLength is the most tokens one request can use.
func (i Info) ContextLength() int64 {
	switch {
	case i.MaxTotalTokens > 0:
		return i.MaxTotalTokens
	case i.MaxInputTokens > 0:
		return i.MaxInputTokens
	}
	return i.MaxInputLength
}

// DecodeInfo decodes GET /info. An object that is neither TGI's nor TEI's
// is an error.
func DecodeInfo(b []byte) (Info, error) {
	var i Info
	if err := probes.DecodeJSON("hf /info", b, &i); err != nil {
		return Info{}, err
	}
	if i.Kind() == probes.KindUnknown {
		return Info{}, &probes.DecodeError{What: "hf /info", Err: errors.New("neither TGI (router, max_input_tokens) nor TEI (model_type)")}
	}
	return i, nil
}

// GenerateRequest is the body of TGI's POST /generate.
type GenerateRequest struct {
	Inputs     string `json:"inputs"`
	Parameters struct {
		MaxNewTokens int  `json:"max_new_tokens,omitempty"`
		Details      bool `json:"details,omitempty"`
	} `json:"parameters"`
}

// GenerateResponse is the body of TGI's /generate answer.
type GenerateResponse struct {
	GeneratedText string `json:"generated_text"`
	Details       *struct {
		FinishReason    string `json:"finish_reason"`
		GeneratedTokens int64  `json:"generated_tokens"`
	} `json:"details,omitempty"`
}

// DecodeGenerate decodes TGI's /generate answer.
func DecodeGenerate(b []byte) (GenerateResponse, error) {
	var r GenerateResponse
	if err := probes.DecodeJSON("tgi /generate", b, &r); err != nil {
		return GenerateResponse{}, err
	}
	return r, nil
}

// DecodeEmbed decodes TEI's POST /embed answer: one vector per input.
func DecodeEmbed(b []byte) ([][]float64, error) {
	var v [][]float64
	if err := probes.DecodeJSON("tei /embed", b, &v); err != nil {
		return nil, err
	}
	if len(v) == 0 || len(v[0]) == 0 {
		return nil, &probes.DecodeError{What: "tei /embed", Err: errors.New("no vectors")}
	}
	return v, nil
}

// Rank is one entry of TEI's POST /rerank answer.
type Rank struct {
	Index int     `json:"index"`
	Score float64 `json:"score"`
	Text  string  `json:"text,omitempty"`
}

// DecodeRerank decodes TEI's POST /rerank answer.
func DecodeRerank(b []byte) ([]Rank, error) {
	var v []Rank
	if err := probes.DecodeJSON("tei /rerank", b, &v); err != nil {
		return nil, err
	}
	if len(v) == 0 {
		return nil, &probes.DecodeError{What: "tei /rerank", Err: errors.New("no ranks")}
	}
	return v, nil
}
