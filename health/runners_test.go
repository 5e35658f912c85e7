package health_test

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
)

// fakeOllamaEnv makes the test binary a fake `ollama serve` ("serve": it
// starts a runner of the simulator's tiny:latest blob and one without
// --model, says "ready" once both have, and waits for its stdin to close)
// or one of its runners ("runner": says "ready" and waits for its stdin to
// close).
const fakeOllamaEnv = "VITALS_HEALTH_FAKE_OLLAMA"

func fakeOllamaMain() bool {
	switch os.Getenv(fakeOllamaEnv) {
	case "":
		return false
	case "runner":
		// Said once this process runs as itself, with its own memory and
		// command line, which the test then reads.
		_, _ = os.Stdout.WriteString("ready\n")
		_, _ = io.Copy(io.Discard, os.Stdin)
	case "serve":
		var stdins []io.Closer
		var kids []*exec.Cmd
		for _, args := range [][]string{
			{"runner", "--model", "/tmp/x/blobs/sha256-" + aisim.BlobDigest("tiny:latest"), "--port", "0"},
			{"runner", "--port", "0"},
		} {
			c := exec.Command(os.Args[0], args...)
			c.Env = append(os.Environ(), fakeOllamaEnv+"=runner")
			in, err := c.StdinPipe()
			if err != nil {
				os.Exit(2)
			}
			out, err := c.StdoutPipe()
			if err != nil || c.Start() != nil {
				os.Exit(2)
			}
			// The server is ready once its runners are.
			if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
				os.Exit(2)
			}
			stdins, kids = append(stdins, in), append(kids, c)
		}
		_, _ = os.Stdout.WriteString("ready\n")
		_, _ = io.Copy(io.Discard, os.Stdin)
		for i, k := range kids {
			_ = stdins[i].Close()
			_ = k.Wait()
		}
	}
	os.Exit(0)
	return true
}

// modelProcessSeries returns plugin id's vitals_ai_model_process_* series
// as name{model} -> value.
func modelProcessSeries(t *testing.T, e *health.Engine, id string) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e.Metrics())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var plugin, model string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "plugin":
					plugin = l.GetValue()
				case "model":
					model = l.GetValue()
				}
			}
			if plugin != id {
				continue
			}
			switch mf.GetName() {
			case "vitals_ai_model_process_cpu_seconds_total":
				out[mf.GetName()+"{"+model+"}"] = m.GetCounter().GetValue()
			case "vitals_ai_model_process_resident_memory_bytes":
				out[mf.GetName()+"{"+model+"}"] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// An Ollama server's runner processes are exported by the model each
// runs, matched by its --model blob's digest to the blob /api/show names
// for a model /api/ps lists (not /api/ps's manifest digest); a runner without
// --model is exported with model="". Their series go with the server.
func TestOllamaRunnersAttributedToModels(t *testing.T) {
	_, srv := sim(t, probes.KindOllama, 1)
	serve := exec.Command(os.Args[0])
	serve.Env = append(os.Environ(), fakeOllamaEnv+"=serve")
	in, err := serve.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := serve.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = in.Close()
			_ = serve.Wait()
		}
	}
	t.Cleanup(stop)
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("fake server said %q, %v; want ready", line, err)
	}
	cfg := fastConfig()
	cfg.Synthetic = false
	r := newRig(t, cfg)
	tg := target("o", probes.KindOllama, srv.URL)
	tg.PID = serve.Process.Pid
	r.e.Upsert(tg)
	r.await("o", "checked once", func(vs []health.Status) bool { return len(vs) >= 1 })
	got := modelProcessSeries(t, r.e, "o")
	for _, model := range []string{"tiny:latest", ""} {
		if got["vitals_ai_model_process_resident_memory_bytes{"+model+"}"] <= 0 {
			t.Errorf("no resident memory series of model %q's runner: %v", model, got)
		}
		if _, ok := got["vitals_ai_model_process_cpu_seconds_total{"+model+"}"]; !ok {
			t.Errorf("no CPU series of model %q's runner: %v", model, got)
		}
	}
	if len(got) != 4 {
		t.Errorf("series %v, want 4 (cpu and rss of two runners)", got)
	}
	stop()
	r.mu.Lock()
	seen := len(r.verdicts["o"])
	r.mu.Unlock()
	r.await("o", "checked twice after the server ended", func(vs []health.Status) bool { return len(vs) >= seen+2 })
	if got := modelProcessSeries(t, r.e, "o"); len(got) != 0 {
		t.Errorf("series %v of runners that are gone, want none", got)
	}
}
