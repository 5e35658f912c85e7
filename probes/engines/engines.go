package engines

import (
	"sync"

	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/hf"
	"github.com/vitals-dev/vitals/probes/kserve"
	"github.com/vitals-dev/vitals/probes/llamacpp"
	"github.com/vitals-dev/vitals/probes/ollama"
	"github.com/vitals-dev/vitals/probes/openai"
)

// families is every engine family, in the order detection asks them: the
// most specific question first, the generic OpenAI-compatible one last
// (Ollama, TGI and llama.cpp list /v1/models too).
func families() []probes.Family {
	return []probes.Family{
		kserve.Family(),   // GET /v2
		hf.Family(),       // GET /info
		ollama.Family(),   // GET /api/version
		llamacpp.Family(), // GET /v1/models written by llama.cpp
		openai.Family(),   // GET /v1/models
	}
}

// Registry returns the registry of every family. The list is fixed and
// TestRegistry builds it, so an error here is a bug of this package: it
// panics, as regexp.MustCompile does for a pattern in the source.
var Registry = sync.OnceValue(func() *probes.Registry {
	r, err := probes.NewRegistry(families()...)
	if err != nil {
		panic("probes/engines: " + err.Error())
	}
	return r
})
