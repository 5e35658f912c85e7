package probes

import (
	"math"
	"os"
	"testing"

	"github.com/prometheus/procfs"
)

// The start time computed from the cached boot time is procfs's own.
func TestStartTimeMatchesProcfs(t *testing.T) {
	got, err := ReadProcess(nil, os.Getpid())
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	p, err := procfs.Self()
	if err != nil {
		t.Fatal(err)
	}
	st, err := p.Stat()
	if err != nil {
		t.Fatal(err)
	}
	want, err := st.StartTime()
	if err != nil {
		t.Fatal(err)
	}
	if got.StartTimeSeconds == 0 || math.Abs(got.StartTimeSeconds-want) > 0.011 {
		t.Errorf("start time %v, procfs says %v", got.StartTimeSeconds, want)
	}
}
