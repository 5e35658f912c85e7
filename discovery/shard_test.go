package discovery_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/discovery"
)

// TestShardsSplitTargets runs 3, then 4, Managers on one file of 300
// targets, as agents of a StatefulSet share one config: every target is
// owned by exactly one, and going to 4 moves about a quarter of them,
// each to the new shard.
func TestShardsSplitTargets(t *testing.T) {
	const n = 300
	dir := t.TempDir()
	var addrs []string
	for i := range n {
		addrs = append(addrs, fmt.Sprintf("10.0.%d.%d:8000", i/250, i%250+1))
	}
	b, _ := json.Marshal([]map[string]any{{"targets": addrs}})
	writeFile(t, filepath.Join(dir, "fleet.json"), string(b))
	cfg := "file_sd_configs:\n  - files: [" + dir + "/fleet.json]\n"

	owners := func(count int) map[string]int {
		t.Helper()
		owner := map[string]int{}
		for i := range count {
			h := run(t, cfg, discovery.Shard{Index: i, Count: count})
			// The metrics are set before the targets are handed on.
			agenttest.Eventually(t, 15*time.Second, "the shard's targets handed on", func() bool {
				text := metricText(t, h)
				return strings.Contains(text, fmt.Sprintf(`vitals_discovery_shard_targets{source="discovery",state="seen"} %d`, n)) &&
					strings.Contains(text, fmt.Sprintf(`vitals_discovery_shard_targets{source="discovery",state="owned"} %d`, len(h.last())))
			})
			for _, tg := range h.last() {
				if prev, dup := owner[tg.ID]; dup {
					t.Fatalf("%d shards: %s owned by %d and %d", count, tg.ID, prev, i)
				}
				owner[tg.ID] = i
			}
			t.Logf("%d shards: shard %d owns %d", count, i, len(h.last()))
			if want := fmt.Sprintf(`vitals_discovery_shard_targets{source="discovery",state="owned"} %d`, len(h.last())); !strings.Contains(metricText(t, h), want) {
				t.Errorf("metrics lack %s", want)
			}
		}
		if len(owner) != n {
			t.Fatalf("%d shards own %d targets, want all %d", count, len(owner), n)
		}
		return owner
	}
	three := owners(3)
	four := owners(4)
	moved := 0
	for id, o := range three {
		if four[id] != o {
			moved++
			if four[id] != 3 {
				t.Errorf("%s moved from shard %d to %d, not to the new shard", id, o, four[id])
			}
		}
	}
	frac := float64(moved) / n
	t.Logf("3 -> 4 shards: %d of %d targets moved (%.3f)", moved, n, frac)
	if frac < 0.17 || frac > 0.33 {
		t.Errorf("moved fraction %.3f, want about 1/4", frac)
	}
}

func TestShardConfig(t *testing.T) {
	idx := func(i int) *int { return &i }
	for _, tc := range []struct {
		name     string
		cfg      discovery.ShardConfig
		hostname string
		want     discovery.Shard
		err      string
	}{
		{"off", discovery.ShardConfig{}, "x", discovery.Shard{}, ""},
		{"explicit", discovery.ShardConfig{Count: 3, Index: idx(2)}, "x", discovery.Shard{Index: 2, Count: 3}, ""},
		{"ordinal", discovery.ShardConfig{Count: 3}, "vitals-1", discovery.Shard{Index: 1, Count: 3}, ""},
		{"ordinal fqdn", discovery.ShardConfig{Count: 3}, "vitals-2.vitals.monitoring.svc", discovery.Shard{Index: 2, Count: 3}, ""},
		{"no ordinal", discovery.ShardConfig{Count: 3}, "vitals", discovery.Shard{}, `hostname "vitals" ends in no -<ordinal>`},
		{"ordinal past count", discovery.ShardConfig{Count: 2}, "vitals-2", discovery.Shard{}, "past count 2"},
		{"index past count", discovery.ShardConfig{Count: 2, Index: idx(2)}, "", discovery.Shard{}, "index: must be 0 to 1"},
		{"negative count", discovery.ShardConfig{Count: -1}, "", discovery.Shard{}, "count: must be"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.cfg.Resolve(tc.hostname)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Resolve = %v, %v, want %v", got, err, tc.want)
			}
		})
	}
	var c discovery.ShardConfig
	if err := c.EnvDecode("1/4"); err != nil || c.Count != 4 || *c.Index != 1 {
		t.Errorf("EnvDecode(1/4) = %+v, %v", c, err)
	}
	if err := c.EnvDecode("4"); err == nil {
		t.Error("EnvDecode(4) took it")
	}
}
