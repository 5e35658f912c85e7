package llamacpp

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/openai"
)

// ModelList is llama.cpp's GET /v1/models: the OpenAI list, with a "meta"
// block per model, and the Ollama-compatible copy of the list in "models".
// In router mode (llama-server with --models-dir or --models-preset, and
// no --model) it lists every model the router knows, each with a
// "status" object, and has no "models" copy.
type ModelList struct {
	Data   []ModelEntry `json:"data"`
	Models []Model      `json:"models,omitempty"`
}

// ModelEntry is one model of the OpenAI list, with llama.cpp's metadata.
type ModelEntry struct {
	openai.ModelEntry
	Meta *Meta `json:"meta,omitempty"`
	// Status is the router's state of the model; nil from a single-model
	// server, which lists only the model it serves.
	Status *ModelStatus `json:"status,omitempty"`
}

// ModelStatus is the "status" object a llama.cpp router gives each model
// it lists (tools/server/server-models.cpp, get_router_models): Value is
// one of the Status constants, Args the command line of the model's
// server process, Failed set (with ExitCode) when that process exited
// with an error, which leaves the model unloaded.
type ModelStatus struct {
	Value    string   `json:"value"`
	Args     []string `json:"args,omitempty"`
	Preset   string   `json:"preset,omitempty"`
	ExitCode int      `json:"exit_code,omitempty"`
	Failed   bool     `json:"failed,omitempty"`
}

// The values of ModelStatus.Value, as server_model_status_to_string
// writes them. A request that names an unloaded model makes the router
// load it (unless it runs with --no-models-autoload or the request says
// ?autoload=false); a request to a sleeping model wakes it. Downloading
// and downloaded are a model being fetched from a hub (POST /models).
const (
	StatusUnloaded    = "unloaded"
	StatusLoading     = "loading"
	StatusLoaded      = "loaded"
	StatusSleeping    = "sleeping"
	StatusDownloading = "downloading"
	StatusDownloaded  = "downloaded"
)

// Router reports whether a llama.cpp router wrote the list: a model with
// a status object. A single-model server's list has none.
func (l ModelList) Router() bool {
	return slices.ContainsFunc(l.Data, func(m ModelEntry) bool { return m.Status != nil })
}

// Find returns the model the router resolves name to: the one with that
// id, else the one with that alias.
func (l ModelList) Find(name string) (ModelEntry, bool) {
	if i := slices.IndexFunc(l.Data, func(m ModelEntry) bool { return m.ID == name }); i >= 0 {
		return l.Data[i], true
	}
	if i := slices.IndexFunc(l.Data, func(m ModelEntry) bool { return slices.Contains(m.Aliases, name) }); i >= 0 {
		return l.Data[i], true
	}
	return ModelEntry{}, false
}

// State is the router's status of the model: its status value, "" when
// the list is not a router's (a single-model server serves its model
// whatever the status).
func (m ModelEntry) State() string {
	if m.Status == nil {
		return ""
	}
	return m.Status.Value
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
	for i, m := range l.Data {
		if m.Status != nil && m.Status.Value == "" {
			return ModelList{}, &probes.DecodeError{What: "llama.cpp /v1/models", Err: fmt.Errorf("model %d (%q) has a status without a value", i, m.ID)}
		}
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
	// Role is "router" from a llama.cpp router's own /props (asked with
	// no ?model=), which says nothing of its models.
	Role string `json:"role,omitempty"`
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
