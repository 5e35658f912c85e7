package messagebus

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(traceChildEnv) != "" {
		os.Exit(traceChild())
	}
	goleak.VerifyTestMain(m)
}
