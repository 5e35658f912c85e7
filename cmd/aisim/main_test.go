package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/agent/agenttest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out agenttest.LogBuffer
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--kind", "ollama", "--listen", "127.0.0.1:0", "--version", "0.9.9", "--latency", "1ms", "--hang"}, &out, ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("run: %v", err)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}

	// --hang holds the API; a request in flight must not block shutdown.
	hung := make(chan error, 1)
	go func() {
		resp, err := c.Get("http://" + addr + "/api/version")
		if err == nil {
			resp.Body.Close()
		}
		hung <- err
	}()

	resp, err := c.Post("http://"+addr+"/aisim/knobs", "application/json", strings.NewReader(`{"hang":false}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = c.Get("http://" + addr + "/api/version")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != `{"version":"0.9.9"}` {
		t.Fatalf("version body %s", b)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	<-hung
	if !strings.Contains(out.String(), "kind=ollama version=0.9.9 listening on http://127.0.0.1:") {
		t.Fatalf("output %q", out.String())
	}
}

// TestRunRouter: --router-models runs llama.cpp's router over the models
// given, each with its status.
func TestRunRouter(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out agenttest.LogBuffer
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--kind", "llamacpp", "--listen", "127.0.0.1:0", "--router-models", "warm=loaded,cold", "--no-models-autoload"}, &out, ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("run: %v", err)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	resp, err := c.Get("http://" + addr + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"id":"warm"`) || !strings.Contains(string(b), `"value":"loaded"`) || !strings.Contains(string(b), `"value":"unloaded"`) {
		t.Fatalf("router /v1/models %s", b)
	}
	resp, err = c.Get("http://" + addr + "/metrics?model=cold")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("--no-models-autoload: /metrics?model=cold answered %d, want 400", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}

// TestRunListensOnceLoaded: like vLLM, the program opens its port only
// once the model is loaded; the knobs set by flag are the server's.
func TestRunListensOnceLoaded(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out agenttest.LogBuffer
	ready := make(chan string, 1)
	done := make(chan error, 1)
	const load = 150 * time.Millisecond
	t0 := time.Now()
	go func() {
		done <- run(ctx, []string{"--kind", "sglang", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
			"--load-time", load.String(), "--api-key", "k", "--slots", "2", "--load", "1", "--model-name", "m"}, &out, ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("run: %v", err)
	}
	if d := time.Since(t0); d < load {
		t.Fatalf("listening after %v, before the %v load ended", d, load)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	resp, err := c.Get("http://" + addr + "/aisim/knobs")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`"slots":2`, `"load":1`, `"api_key":"k"`, `"model_name":"m"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("knobs %s lack %s", b, want)
		}
	}
	resp, err = c.Get("http://" + addr + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/v1/models without the key: %d", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	if !strings.Contains(out.String(), "aisim: kind=sglang loading") || !strings.Contains(out.String(), "/metrics") {
		t.Fatalf("output %q", out.String())
	}
}

func TestRunBadFlags(t *testing.T) {
	tests := [][]string{
		{"--kind", "bogus"},
		{"--kind", "auto"},
		{"--error-rate", "2"},
		{"--latency", "-1s"},
		{"--kind", "tei", "--model-type", "chat"},
		{"--listen", "127.0.0.1:0", "extra"},
		{"--nope"},
		{"--sleep-level", "3"},
		{"--load", "-1"},
		{"--keep-alive", "soon"},
		{"--kind", "llamacpp", "--model-type", "classifier"},
		{"--kind", "vllm", "--router-models", "a"},
		{"--kind", "llamacpp", "--router-models", "a,,b"},
		{"--kind", "llamacpp", "--router-models", "a=asleep"},
	}
	for _, args := range tests {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var out bytes.Buffer
			if err := run(context.Background(), append([]string{"--listen", "127.0.0.1:0"}, args...), &out, nil); err == nil {
				t.Fatal("run accepted bad flags")
			}
		})
	}
}
