package extmanager_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vitals-dev/vitals/catalog"
	"github.com/vitals-dev/vitals/probes"
)

// writeManifest writes a manifest as editors do: a temp file renamed in.
func writeManifest(t *testing.T, dir, name, text string) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func TestManifestsThatAreNotFilesAreSkipped(t *testing.T) {
	_, url := simServer(t, probes.KindVLLM)
	dir := t.TempDir()
	writeManifest(t, dir, "present.yaml", "endpoint: "+url+"\n")
	r := start(t, fmt.Sprintf("directory: %q\nbus: {enabled: false}\n", dir))
	t.Cleanup(func() { // before start's own Stop, which waits without a bound
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.stop(ctx); err != nil {
			t.Errorf("Stop = %v, want it to return at once", err)
		}
	})

	// Both sort before the good manifest written after them.
	if err := syscall.Mkfifo(filepath.Join(dir, "a-pipe.yaml"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", filepath.Join(dir, "b-zero.yaml")); err != nil {
		t.Fatal(err)
	}
	writeManifest(t, dir, "c-new.yaml", "endpoint: "+url+"\n")
	r.await(catalog.EventRegistered, "c-new")
	if got := testutil.ToFloat64(discoveryErrors(t, r.metrics, "directory")); got < 2 {
		t.Errorf("discovery errors = %v, want the pipe and the device counted", got)
	}
}

func TestManifestIDConflict(t *testing.T) {
	_, url := simServer(t, probes.KindVLLM)
	dir := t.TempDir()
	writeManifest(t, dir, "a.yaml", "id: twin\nendpoint: "+url+"\nlabels: {from: a}\n")
	writeManifest(t, dir, "b.yaml", "id: twin\nendpoint: "+url+"\nlabels: {from: b}\n")
	r := start(t, fmt.Sprintf("directory: %q\nbus: {enabled: false}\n", dir))
	from := func() string {
		p, ok := r.e.Catalog().Get("twin")
		if !ok {
			return "(none)"
		}
		return p.Labels["from"]
	}
	if got := from(); got != "a" {
		t.Fatalf("twin declared by %s, want a: the first by name keeps the id", got)
	}
	if got := testutil.ToFloat64(discoveryErrors(t, r.metrics, "directory")); got < 1 {
		t.Errorf("discovery errors = %v, want the conflict counted", got)
	}

	// Removing the loser keeps the plugin; the scan that saw it is the one
	// that registers "marker".
	if err := os.Remove(filepath.Join(dir, "b.yaml")); err != nil {
		t.Fatal(err)
	}
	writeManifest(t, dir, "marker.yaml", "endpoint: "+url+"\n")
	r.await(catalog.EventRegistered, "marker")
	if got := from(); got != "a" {
		t.Fatalf("after removing b.yaml, twin is declared by %s, want a", got)
	}

	// Removing the winner hands the id to the other manifest, without
	// deregistering the plugin in between.
	writeManifest(t, dir, "b.yaml", "id: twin\nendpoint: "+url+"\nlabels: {from: b}\n")
	writeManifest(t, dir, "marker.yaml", "endpoint: "+url+"\nlabels: {round: two}\n")
	r.awaitWhere(catalog.EventUpdated, "marker", func(ev catalog.Event) bool { return ev.Plugin.Labels["round"] == "two" })
	if got := from(); got != "a" {
		t.Fatalf("a new conflicting b.yaml took the id from a (%s)", got)
	}
	if err := os.Remove(filepath.Join(dir, "a.yaml")); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(15 * time.Second)
	for {
		select {
		case ev := <-r.evs:
			if ev.ID != "twin" {
				continue
			}
			if ev.Type == catalog.EventDeregistered {
				t.Fatalf("twin deregistered while b.yaml still declares it: %s", ev.Reason)
			}
			if ev.Type == catalog.EventUpdated && ev.Plugin.Labels["from"] == "b" {
				return
			}
		case <-deadline:
			t.Fatalf("twin not handed to b.yaml; it is declared by %s", from())
		}
	}
}
