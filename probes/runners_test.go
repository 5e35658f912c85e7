package probes_test

import (
	"os"
	"testing"

	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/probestest"
)

// runnerDigest is the weights blob of the fake server's runner with --model.
const runnerDigest = "6bcf11190d71e13406d408455f611d066d8661ad65a3687db7021d34f0cc2b49"

// The runner children of an Ollama server are found by their parent and
// attributed to the loaded model whose /api/ps digest is their --model
// blob's; a runner without --model is found but not attributed.
func TestFindModelProcesses(t *testing.T) {
	pid, _ := probestest.StartFakeOllama(t, runnerDigest)
	// Runners are matched by the weights blob /api/show names, never by
	// the manifest digest /api/ps lists, even when one equals the blob's.
	loaded := []probes.LoadedModel{
		{Name: "other:1b", Digest: runnerDigest, BlobDigest: "sha256:0a1f0e8f3f8d8ad9c2f46c1f4a1c1b5e0f6c3b7f1d7a1f7e59c50c3e3a4e9d11"},
		{Name: "llama3.2:1b", Digest: "sha256:feedfacefeedfacefeedfacefeedfacefeedfacefeedfacefeedfacefeedface", BlobDigest: "sha256:" + runnerDigest},
	}
	mps, err := probes.FindModelProcesses(nil, pid, loaded)
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
