package extmanager_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"

	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/probes"
)

// The per-target cost of /metrics, as a scrape sees it: 1000 targets, the
// shipped probes (liveness, readiness, resources), all checked and
// healthy, then one gather of the agent's registry in the text format a
// Prometheus without native histograms asks for. Series per target stay
// at 20 or fewer (a state is one series, not one per state; the resource
// probe has no duration histogram). The goal for the text is 1 MB at 1000
// targets; it is about 1.18 MB with ids of six characters, and the bound
// here holds it from growing.
func TestSeriesPerTarget(t *testing.T) {
	const targets = 1000
	_, url := simServer(t, probes.KindOpenAI)
	var b strings.Builder
	b.WriteString("directory: \"\"\nbus: {enabled: false}\nhealth: {interval: 2s, start_spread: 0, jitter: 0}\ntargets:\n")
	for i := range targets {
		fmt.Fprintf(&b, "  - {id: t%05d, endpoint: %q, kind: openai}\n", i, url)
	}
	r := start(t, b.String())
	// The catalog's events are not this test's subject: drain them so that
	// the rig's buffer never holds the catalog up.
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		for {
			select {
			case <-r.evs:
			case <-done:
				return
			}
		}
	}()
	states := map[health.State]int{}
	if !agenttest.Within(90*time.Second, func() bool {
		clear(states)
		for i := range targets {
			p, ok := r.e.Catalog().Get(fmt.Sprintf("t%05d", i))
			if !ok || p.Health == nil {
				states[""]++
				continue
			}
			states[p.Health.State]++
		}
		return states[health.StateHealthy] == targets
	}) {
		t.Fatalf("targets by state: %v, want all %d healthy", states, targets)
	}

	base := exposition(t, r)
	perPlugin := map[string]int{}
	series := 0
	for _, line := range strings.Split(string(base), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		if strings.Contains(line, `plugin="t`) {
			series++
			name := line[:strings.IndexAny(line, "{ ")]
			perPlugin[name]++
		}
	}
	per := float64(series) / targets
	t.Logf("%d targets: %.1f series per target, %d bytes (%.2f MB) of text", targets, per, len(base), float64(len(base))/1e6)
	for name, n := range perPlugin {
		t.Logf("  %s: %.1f per target", name, float64(n)/targets)
	}
	if per > 20 {
		t.Errorf("%.1f series per target, want at most 20", per)
	}
	if len(base) > 1.25e6 {
		t.Errorf("one scrape at %d targets is %d bytes of text, want at most 1.25 MB", targets, len(base))
	}
}

// exposition gathers r's registry and encodes it as text.
func exposition(t *testing.T, r *rig) []byte {
	t.Helper()
	mfs, err := r.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}
