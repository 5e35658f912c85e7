package agent_test

import (
	"context"
	"testing"

	"github.com/sethvargo/go-envconfig"

	"github.com/vitals-dev/vitals/agent"
)

// FuzzParse: no config text makes Parse panic.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"core:\n  log: {level: info}\n  api_gateway:\n    plugins:\n      alpha: {setting: x, limit: 2}\n      beta: {}\n",
		"core:\n  lifecycle: {watch_config: false, step_timeout: 2s}\n",
		"core:\n  api_gateway: {listen: '1:2', plugins: {alpha: ~}}\n",
	} {
		f.Add([]byte(s))
	}
	reg := testRegistry()
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = agent.Parse(context.Background(), "f", data, reg, envconfig.MapLookuper(nil))
	})
}
