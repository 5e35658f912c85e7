package agent_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/vitals-dev/vitals/agent"
)

func TestSectionPlace(t *testing.T) {
	s, err := agent.ParseSection("core.yaml", []byte("health:\n  history:\n    ring: 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	unplaced := agent.KeyErrorf("history.ring", "must be 1 to 100000, got %d", 0)
	if got, want := unplaced.Error(), "history.ring: must be 1 to 100000, got 0"; got != want {
		t.Errorf("unplaced: %q, want %q", got, want)
	}
	for _, tc := range []struct {
		name, prefix string
		err          error
		want         string
	}{
		{"at its key below the prefix, with the line", "health", unplaced, "core.yaml:3:5: health.history.ring: must be 1 to 100000, got 0"},
		{"wrapped", "health", fmt.Errorf("check: %w", unplaced), "core.yaml:3:5: health.history.ring: must be 1 to 100000, got 0"},
		{"no prefix", "", agent.KeyErrorf("health", "bad"), "core.yaml:1:1: health: bad"},
		{"another error at the prefix", "health", errors.New("boom"), "core.yaml:1:1: health: boom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := s.Place(tc.prefix, tc.err).Error(); got != tc.want {
				t.Errorf("Place(%q, %v) = %q, want %q", tc.prefix, tc.err, got, tc.want)
			}
		})
	}
}
