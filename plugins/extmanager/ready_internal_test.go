package extmanager

import (
	"testing"
	"time"

	"github.com/vitals-dev/vitals/catalog"
	"github.com/vitals-dev/vitals/health"
)

// TestReadinessOfEveryState: a checked plugin is ready exactly in the
// states that serve, and never when it is lost or unchecked.
func TestReadinessOfEveryState(t *testing.T) {
	now := time.Now()
	for _, s := range health.States {
		p := catalog.AIPlugin{ID: "a", Presence: catalog.PresenceActive, Health: &health.Status{ID: "a", State: s, Reason: "why", Checked: now}}
		r := readiness(p, true)
		if r.Ready != s.Serving() || r.State != s {
			t.Errorf("%s: ready %v, want %v", s, r.Ready, s.Serving())
		}
		if !r.Ready && r.Reason == "" {
			t.Errorf("%s: not ready without a reason", s)
		}
		p.Presence = catalog.PresenceLost
		if r := readiness(p, true); r.Ready || r.Reason == "" {
			t.Errorf("%s, lost: %+v", s, r)
		}
	}
	if r := readiness(catalog.AIPlugin{ID: "a", Presence: catalog.PresenceActive}, true); r.Ready || r.State != health.StateUnknown {
		t.Errorf("unchecked: %+v", r)
	}
}
