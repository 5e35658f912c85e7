package extmanager_test

import (
	"fmt"
	"testing"

	"github.com/vitals-dev/vitals/catalog"
	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/probes"
)

// A server that recovers is asked again what it is: one that went down
// and came back as another version is seen at once, not after
// redetect_interval, nor after the max_backoff that spaces the
// re-detections failing probes ask for (both minutes here).
func TestRecoveredServerIsDetectedAgain(t *testing.T) {
	sim, url := simServer(t, probes.KindVLLM)
	r := start(t, fmt.Sprintf(`
directory: ""
bus: {enabled: false}
detection: {max_backoff: 5m, redetect_interval: 10m}
%stargets: [{id: o, endpoint: %q}]
`, fastHealth, url))
	first := r.awaitDetected("o")
	r.awaitHealth("o", func(h *health.Status) bool { return h != nil && h.State == health.StateHealthy })
	sim.SetDown(true)
	r.awaitHealth("o", func(h *health.Status) bool { return h != nil && h.State == health.StateUnhealthy })
	sim.SetVersion("0.99.3")
	sim.SetDown(false)
	ev := r.awaitWhere(catalog.EventVersionChanged, "o", func(ev catalog.Event) bool { return ev.Version == "0.99.3" })
	if ev.OldVersion != first.Version {
		t.Errorf("version change %q → %q, want %q → 0.99.3", ev.OldVersion, ev.Version, first.Version)
	}
}
