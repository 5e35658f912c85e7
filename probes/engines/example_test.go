package engines_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/engines"
)

// The registry detects what an endpoint is; here a simulated Ollama server.
func ExampleRegistry() {
	sim, err := aisim.New(aisim.Config{Kind: probes.KindOllama})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(sim)
	defer srv.Close()
	defer sim.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()

	d, err := engines.Registry().Detect(context.Background(), &http.Client{Transport: tr}, srv.URL, probes.DefaultDetectOptions())
	if err != nil {
		panic(err)
	}
	fmt.Println(d.Kind, d.Version, d.Capabilities)
	for _, m := range d.Models {
		fmt.Println(m.ID, m.Capabilities, m.ContextLength)
	}
	// Output:
	// ollama 0.24.0 [chat completion embeddings vision tools]
	// tiny:latest [chat completion tools] 2048
	// tiny-vision:latest [chat completion vision] 4096
	// tiny-embed:latest [embeddings] 512
}
