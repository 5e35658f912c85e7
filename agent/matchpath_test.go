package agent_test

import (
	"testing"

	"github.com/vitals-dev/vitals/agent"
)

func TestMatchPath(t *testing.T) {
	const ready = "/api/v1/ai-plugins/*/ready"
	for _, c := range []struct {
		pattern, path string
		want          bool
	}{
		{"/readyz", "/readyz", true},
		{"/readyz", "/readyz/", false},
		{"/readyz", "/readyzz", false},
		{"/debug/", "/debug/pprof/", true},
		{"/debug/", "/debug", false},
		{ready, "/api/v1/ai-plugins/llm/ready", true},
		{ready, "/api/v1/ai-plugins/ns.pod-1/ready", true},
		{ready, "/api/v1/ai-plugins//ready", false},
		{ready, "/api/v1/ai-plugins/../ready", false},
		{ready, "/api/v1/ai-plugins/./ready", false},
		{ready, "/api/v1/ai-plugins/a/b/ready", false},
		{ready, "/api/v1/ai-plugins/llm/ready/", false},
		{ready, "/api/v1/ai-plugins/llm/readyz", false},
		{ready, "/api/v1/ai-plugins/llm", false},
		{ready, "/api/v1/admin/ai-plugins/llm/ready", false},
		{ready, "/api/v1/ai-plugins/llm/ready/../../../admin/reload", false},
		{"/a/*", "/a/b", true},
		{"/a/*", "/a/", false},
	} {
		if got := agent.MatchPath(c.pattern, c.path); got != c.want {
			t.Errorf("MatchPath(%q, %q) = %v, want %v", c.pattern, c.path, got, c.want)
		}
	}
}
