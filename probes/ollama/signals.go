package ollama

import (
	"fmt"
	"time"

	"github.com/vitals-dev/vitals/probes"
)

// DecodePSSignals decodes GET /api/ps, Ollama's list of the models it has
// loaded, into the signals' loaded models: each one's memory (size), the
// part of it in VRAM (size_vram), the context it was loaded with and when
// it unloads unless used again (expires_at; a model kept loaded for good,
// keep_alive -1, expires in the far future). An empty list is reported
// too: no model is loaded. The fields are those of api.ProcessModelResponse
// in api/types.go and the "List Running Models" section of docs/api.md.
func DecodePSSignals(b []byte) (probes.Signals, error) {
	models, err := DecodePS(b)
	if err != nil {
		return probes.Signals{}, err
	}
	s := probes.Signals{Engine: probes.EngineOllama, Reported: probes.FieldLoadedModels, LoadedModels: []probes.LoadedModel{}}
	for i, m := range models {
		name := m.Name
		if name == "" {
			name = m.Model
		}
		if name == "" {
			return probes.Signals{}, &probes.DecodeError{What: "ollama /api/ps", Err: fmt.Errorf("model %d has no name", i)}
		}
		lm := probes.LoadedModel{Name: name, SizeBytes: m.Size, VRAMBytes: m.SizeVRAM, ContextLength: m.ContextLength, Digest: m.Digest}
		if m.ExpiresAt != "" {
			t, err := time.Parse(time.RFC3339Nano, m.ExpiresAt)
			if err != nil {
				return probes.Signals{}, &probes.DecodeError{What: "ollama /api/ps", Err: fmt.Errorf("model %q: expires_at: %w", name, err)}
			}
			if !t.IsZero() {
				lm.ExpiresAt = t
			}
		}
		s.LoadedModels = append(s.LoadedModels, lm)
	}
	return s, nil
}
