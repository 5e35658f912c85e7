package extmanager_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/catalog"
	"github.com/vitals-dev/vitals/discovery"
	"github.com/vitals-dev/vitals/probes"
)

// gaugeIf is gaugeValue for a series that may not be there yet.
func gaugeIf(g prometheus.Gatherer, name string, want map[string]string) (float64, bool) {
	mfs, _ := g.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if v, ok := want[l.GetName()]; ok && v != l.GetValue() {
					continue series
				}
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

func writeSD(t *testing.T, path string, groups any) {
	t.Helper()
	b, err := json.Marshal(groups)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".tmp", b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// TestPrometheusDiscovery: file_sd targets, relabeled, join the catalog
// with source discovery, are detected, follow the file, and a reload
// with new relabel rules applies to them.
func TestPrometheusDiscovery(t *testing.T) {
	_, simURL := simServer(t, probes.KindOllama)
	u, _ := url.Parse(simURL)
	dir := t.TempDir()
	sd := filepath.Join(dir, "llm.json")
	writeSD(t, sd, []map[string]any{{"targets": []string{u.Host}, "labels": map[string]string{"__vitals_id__": "llm-1", "__meta_team": "search"}}})
	section := func(extra string) string {
		return fmt.Sprintf("directory: \"\"\nbus: {enabled: false}\nhealth: {enabled: false}\nfile_sd_configs:\n  - files: [%s]\nrelabel_configs:\n  - source_labels: [__meta_team]\n    target_label: team\n%s", sd, extra)
	}
	r := start(t, section(""))
	ev := r.await(catalog.EventRegistered, "llm-1")
	if ev.Source != catalog.SourceDiscovery {
		t.Errorf("source = %s, want discovery", ev.Source)
	}
	p := r.awaitDetected("llm-1")
	if p.Kind != probes.KindOllama || p.Endpoint != "http://"+u.Host || p.Labels["team"] != "search" {
		t.Errorf("llm-1 = kind %s endpoint %s labels %v", p.Kind, p.Endpoint, p.Labels)
	}
	if v := gaugeValue(t, r.metrics, "vitals_discovery_targets", map[string]string{"source": "file_sd_configs[0]"}); v != 1 {
		t.Errorf("vitals_discovery_targets = %v, want 1", v)
	}

	// The file changes: llm-1 goes, llm-2 comes, without a restart.
	writeSD(t, sd, []map[string]any{{"targets": []string{u.Host}, "labels": map[string]string{"__vitals_id__": "llm-2"}}})
	r.await(catalog.EventDeregistered, "llm-1")
	if _, ok := r.e.Catalog().Get("llm-2"); !ok {
		r.await(catalog.EventRegistered, "llm-2")
	}

	// A reload with a rule that drops it takes it out.
	s, _ := agent.NewSection(section("  - source_labels: [__vitals_id__]\n    regex: llm-2\n    action: drop\n"))
	if err := r.e.Reload(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	r.await(catalog.EventDeregistered, "llm-2")

	// A discovered kind that Vitals does not know is dropped and counted.
	writeSD(t, sd, []map[string]any{{"targets": []string{u.Host}, "labels": map[string]string{"__vitals_id__": "llm-3", "__vitals_kind__": "gpt9"}}})
	agenttest.Eventually(t, 15*time.Second, "the bad kind counted", func() bool {
		v, _ := gaugeIf(r.metrics, "vitals_discovery_dropped_targets", map[string]string{"source": "file_sd_configs[0]", "reason": "invalid"})
		return v == 1
	})
	if _, ok := r.e.Catalog().Get("llm-3"); ok {
		t.Error("a target of an unknown kind joined the catalog")
	}
}

// TestShardedAgents runs 3 ExtManagers, then 4 (the 3 reloaded with
// count 4, and a new one), on one config of 300 discovered targets and 12
// config targets: every target is in exactly one catalog, and the move
// to 4 shifts about a quarter, each to the new agent.
func TestShardedAgents(t *testing.T) {
	const nSD, nStatic = 300, 12
	// One loopback server answers every target (404): detection finds
	// nothing, quickly, and nothing leaves the machine.
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	dir := t.TempDir()
	sd := filepath.Join(dir, "fleet.json")
	var groups []map[string]any
	for i := range nSD {
		groups = append(groups, map[string]any{"targets": []string{host}, "labels": map[string]string{"__metrics_path__": fmt.Sprintf("/t%d", i)}})
	}
	writeSD(t, sd, groups)
	var static strings.Builder
	for i := range nStatic {
		fmt.Fprintf(&static, "  - {id: static-%d, endpoint: %q}\n", i, srv.URL)
	}
	section := func(count, index int) string {
		return fmt.Sprintf("directory: \"\"\nbus: {enabled: false}\nhealth: {enabled: false}\ndetection: {attempts: 1, timeout: 1s}\nshard: {count: %d, index: %d}\ntargets:\n%sfile_sd_configs:\n  - files: [%s]\n", count, index, static.String(), sd)
	}

	var rigs []*rig
	add := func(count, index int) {
		done := make(chan struct{})
		t.Cleanup(func() { close(done) }) // after the rig's own cleanup: it stops first
		r := start(t, section(count, index))
		go func() { // nobody awaits events here
			for {
				select {
				case <-r.evs:
				case <-done:
					return
				}
			}
		}()
		rigs = append(rigs, r)
	}
	owners := func(count int) map[string]int {
		t.Helper()
		owner := map[string]int{}
		agenttest.Eventually(t, 30*time.Second, fmt.Sprintf("%d agents hold every target", count), func() bool {
			clear(owner)
			n := 0
			for i, r := range rigs {
				if v, ok := gaugeIf(r.metrics, "vitals_discovery_shard_targets", map[string]string{"source": "discovery", "state": "seen"}); !ok || v != nSD {
					return false
				}
				for _, p := range r.e.Catalog().List(catalog.Filter{}) {
					owner[p.ID] = i
					n++
				}
			}
			return n == nSD+nStatic && len(owner) == n
		})
		for i, r := range rigs {
			sdOwned := gaugeValue(t, r.metrics, "vitals_discovery_shard_targets", map[string]string{"source": "discovery", "state": "owned"})
			cfgOwned := gaugeValue(t, r.metrics, "vitals_discovery_shard_targets", map[string]string{"source": "config", "state": "owned"})
			if got := len(r.e.Catalog().List(catalog.Filter{})); float64(got) != sdOwned+cfgOwned {
				t.Errorf("agent %d of %d: %d in its catalog, metrics say it owns %v", i, count, got, sdOwned+cfgOwned)
			}
			t.Logf("agent %d of %d owns %v discovered and %v config targets", i, count, sdOwned, cfgOwned)
		}
		return owner
	}

	for i := range 3 {
		add(3, i)
	}
	three := owners(3)
	for i, r := range rigs {
		s, _ := agent.NewSection(section(4, i))
		if err := r.e.Reload(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
	add(4, 3)
	// Until every agent has applied its reload, an old owner may still
	// hold a target that moves: wait for each agent to hold exactly the
	// targets that rendezvous hashing gives it.
	agenttest.Eventually(t, 30*time.Second, "every agent holds its shard of 4", func() bool {
		for i, r := range rigs {
			want := 0
			for id := range three {
				if discovery.Owner(id, 4) == i {
					want++
					if _, ok := r.e.Catalog().Get(id); !ok {
						return false
					}
				}
			}
			if len(r.e.Catalog().List(catalog.Filter{})) != want {
				return false
			}
		}
		return true
	})
	four := owners(4)
	moved := 0
	for id, o := range three {
		if four[id] != o {
			moved++
			if four[id] != 3 {
				t.Errorf("%s moved from agent %d to %d, not to the new one", id, o, four[id])
			}
		}
	}
	frac := float64(moved) / float64(len(three))
	t.Logf("3 -> 4 agents: %d of %d targets moved (%.3f)", moved, len(three), frac)
	if frac < 0.17 || frac > 0.33 {
		t.Errorf("moved fraction %.3f, want about 1/4", frac)
	}
}

// TestShardedManifests: two agents watching one manifest directory with
// shard 0/2 and 1/2 register each manifest once between them.
func TestShardedManifests(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	dir := t.TempDir()
	const n = 20
	for i := range n {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("m-%d.yaml", i)), []byte("endpoint: "+srv.URL+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	owner := map[string]int{}
	for i := range 2 {
		r := start(t, fmt.Sprintf("directory: %s\nbus: {enabled: false}\nhealth: {enabled: false}\ndetection: {attempts: 1}\nshard: {count: 2, index: %d}\n", dir, i))
		for _, p := range r.e.Catalog().List(catalog.Filter{Source: catalog.SourceDirectory}) {
			if prev, dup := owner[p.ID]; dup {
				t.Errorf("%s registered by agents %d and %d", p.ID, prev, i)
			}
			owner[p.ID] = i
		}
		if v, _ := gaugeIf(r.metrics, "vitals_discovery_shard_targets", map[string]string{"source": "directory", "state": "seen"}); v != n {
			t.Errorf("agent %d saw %v manifests, want %d", i, v, n)
		}
	}
	if len(owner) != n {
		t.Errorf("%d manifests registered between the agents, want %d", len(owner), n)
	}
}
