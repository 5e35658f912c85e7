package llamacpp

import (
	"encoding/json"
	"errors"

	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/openai"
)

// ModelList is llama.cpp's GET /v1/models: the OpenAI list, with a "meta"
// block per model, and the Ollama-compatible copy of the list in "models".
type ModelList struct {
	Data   []ModelEntry `json:"data"`
	Models []Model      `json:"models,omitempty"`
}

// ModelEntry is one model of the OpenAI list, with llama.cpp's metadata.
type ModelEntry struct {
	openai.ModelEntry
	Meta *Meta `json:"meta,omitempty"`
}

// Meta is the "meta" block llama.cpp adds to each model.
type Meta struct {
	VocabType int64  `json:"vocab_type"`
	NVocab    int64  `json:"n_vocab"`
	NCtx      int64  `json:"n_ctx"`
	NCtxTrain int64  `json:"n_ctx_train"`
	NEmbd     int64  `json:"n_embd"`
	NParams   int64  `json:"n_params"`
	Size      int64  `json:"size"`
	FType     string `json:"ftype"`
}

// Model is an entry of llama.cpp's "models" list.
type Model struct {
	Name         string   `json:"name"`
	Model        string   `json:"model"`
	Capabilities []string `json:"capabilities"`
}

// DecodeModels decodes llama.cpp's /v1/models. It must be an OpenAI model
// list (openai.DecodeModels says what that is).
func DecodeModels(b []byte) (ModelList, error) {
	if _, err := openai.DecodeModels(b); err != nil {
		return ModelList{}, err
	}
	var l ModelList
	if err := json.Unmarshal(b, &l); err != nil {
		return ModelList{}, &probes.DecodeError{What: "llama.cpp /v1/models", Err: err}
	}
	return l, nil
}

// Written reports whether llama.cpp wrote the list: a model owned by
// "llamacpp" or with llama.cpp's metadata.
func (l ModelList) Written() bool {
	for _, m := range l.Data {
		if m.OwnedBy == "llamacpp" || m.Meta != nil && m.Meta.NCtxTrain > 0 {
			return true
		}
	}
	return false
}

// Props is the part of llama.cpp's GET /props that probes use.
type Props struct {
	DefaultGenerationSettings struct {
		NCtx int64 `json:"n_ctx"`
	} `json:"default_generation_settings"`
	TotalSlots int64  `json:"total_slots"`
	ModelAlias string `json:"model_alias"`
	ModelPath  string `json:"model_path"`
	Modalities struct {
		Vision bool `json:"vision"`
		Audio  bool `json:"audio"`
	} `json:"modalities"`
	ChatTemplate     string `json:"chat_template"`
	ChatTemplateCaps struct {
		SupportsTools     bool `json:"supports_tools"`
		SupportsToolCalls bool `json:"supports_tool_calls"`
	} `json:"chat_template_caps"`
	BuildInfo  string `json:"build_info"`
	IsSleeping bool   `json:"is_sleeping"`
}

// DecodeProps decodes llama.cpp's /props. It must name a build or a model.
func DecodeProps(b []byte) (Props, error) {
	var p Props
	if err := probes.DecodeJSON("llama.cpp /props", b, &p); err != nil {
		return Props{}, err
	}
	if p.BuildInfo == "" && p.ModelPath == "" && p.ModelAlias == "" {
		return Props{}, &probes.DecodeError{What: "llama.cpp /props", Err: errors.New("no build_info, model_path or model_alias")}
	}
	return p, nil
}

// Health is the body of llama.cpp's GET /health (and of its 503 while the
// model loads).
type Health struct {
	Status string `json:"status"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Type    string `json:"type"`
	} `json:"error,omitempty"`
}

// DecodeHealth decodes llama.cpp's /health.
func DecodeHealth(b []byte) (Health, error) {
	var h Health
	if err := probes.DecodeJSON("llama.cpp /health", b, &h); err != nil {
		return Health{}, err
	}
	if h.Status == "" && h.Error == nil {
		return Health{}, &probes.DecodeError{What: "llama.cpp /health", Err: errors.New("no status")}
	}
	return h, nil
}
