package probes_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/vitals-dev/vitals/probes"
)

// A probe is a function of a context, a client, a target and a config that
// returns a Result and an error; Run times it and classifies the error.
func ExampleRun() {
	ready := probes.ProbeFunc(func(ctx context.Context, _ *http.Client, t probes.Target, _ probes.Config) (probes.Result, error) {
		return probes.Result{}, &probes.HTTPError{Method: "GET", URL: t.BaseURL + "/health", Status: 503}
	})
	res, err := probes.Run(context.Background(), ready, nil, probes.Target{ID: "llm-1", BaseURL: "http://127.0.0.1:8080"},
		probes.Config{Timeout: time.Second}, nil)
	var he *probes.HTTPError
	fmt.Println(res.Class, errors.As(err, &he), he.Status)
	// Output: http_5xx true 503
}

func ExampleClassify() {
	err := fmt.Errorf("check llm-1: %w", context.DeadlineExceeded)
	fmt.Println(probes.Classify(err), probes.Classify(err).Transient())
	// Output: timeout true
}
