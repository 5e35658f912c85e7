package probes_test

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"testing"

	"github.com/vitals-dev/vitals/probes"
)

// fakeProcessEnv makes the test binary a fake process: "serve" (a server
// that starts two runner children, one with --model and one without, says
// "ready" once both have, and waits for its stdin to close) or "runner"
// (says "ready" and waits for its stdin to close).
const fakeProcessEnv = "VITALS_PROBES_FAKE_PROCESS"

const runnerDigest = "6bcf11190d71e13406d408455f611d066d8661ad65a3687db7021d34f0cc2b49"

func fakeProcessMain() bool {
	switch os.Getenv(fakeProcessEnv) {
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
			{"runner", "--model", "/tmp/x/blobs/sha256-" + runnerDigest, "--port", "0"},
			{"runner", "--port", "0"},
		} {
			c := exec.Command(os.Args[0], args...)
			c.Env = append(os.Environ(), fakeProcessEnv+"=runner")
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
		os.Stdout.WriteString("ready\n")
		_, _ = io.Copy(io.Discard, os.Stdin)
		for i, k := range kids {
			_ = stdins[i].Close()
			_ = k.Wait()
		}
	}
	os.Exit(0)
	return true
}

// The runner children of an Ollama server are found by their parent and
// attributed to the loaded model whose /api/ps digest is their --model
// blob's; a runner without --model is found but not attributed.
func TestFindModelProcesses(t *testing.T) {
	serve := exec.Command(os.Args[0])
	serve.Env = append(os.Environ(), fakeProcessEnv+"=serve")
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
	t.Cleanup(func() { _ = in.Close(); _ = serve.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("fake server said %q, %v; want ready", line, err)
	}
	// Runners are matched by the weights blob /api/show names, never by
	// the manifest digest /api/ps lists, even when one equals the blob's.
	loaded := []probes.LoadedModel{
		{Name: "other:1b", Digest: runnerDigest, BlobDigest: "sha256:0a1f0e8f3f8d8ad9c2f46c1f4a1c1b5e0f6c3b7f1d7a1f7e59c50c3e3a4e9d11"},
		{Name: "llama3.2:1b", Digest: "sha256:feedfacefeedfacefeedfacefeedfacefeedfacefeedfacefeedfacefeedface", BlobDigest: "sha256:" + runnerDigest},
	}
	mps, err := probes.FindModelProcesses(nil, serve.Process.Pid, loaded)
	if err != nil {
		t.Fatal(err)
	}
	if len(mps) != 2 {
		t.Fatalf("%d runners found, want 2: %+v", len(mps), mps)
	}
	byModel := map[string]probes.ModelProcess{}
	for _, mp := range mps {
		if mp.PID <= 0 || mp.ResidentBytes <= 0 {
			t.Errorf("runner %+v: no PID or resident memory", mp)
		}
		byModel[mp.Model] = mp
	}
	if mp, ok := byModel["llama3.2:1b"]; !ok || mp.Digest != "sha256:"+runnerDigest {
		t.Errorf("runners %+v: none attributed to llama3.2:1b with its digest", mps)
	}
	if mp, ok := byModel[""]; !ok || mp.Digest != "" {
		t.Errorf("runners %+v: the runner without --model is not the unattributed one", mps)
	}
	// A process that is not the server has no runners.
	none, err := probes.FindModelProcesses(nil, os.Getpid(), loaded)
	if err != nil || len(none) != 0 {
		t.Errorf("runners of the test process: %+v, %v; want none", none, err)
	}
}
