package pluginstat

import (
	"bytes"
	"context"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParse(t *testing.T) {
	profile := `goroutine profile: total 9
3 @ 0x1 0x2
# labels: {"plugin":"log_consumer", "step":"start"}
#	0x1	main.f+0x1	f.go:1

2 @ 0x3
# labels: {"plugin":"log_consumer", "step":"initialize"}
#	0x3	main.g+0x1	g.go:1

1 @ 0x4
#	0x4	main.h+0x1	h.go:1

2 @ 0x5
# labels: {"step":"start"}
#	0x5	main.i+0x1	i.go:1

1 @ 0x6
# labels: {"plugin":"routing", "step":"start"}
`
	c := parse(bytes.NewBufferString(profile))
	if c.ByPlugin["log_consumer"] != 5 || c.ByPlugin["routing"] != 1 || c.Unattributed != 3 || len(c.ByPlugin) != 2 {
		t.Fatalf("census %+v", c)
	}
}

func TestCensusSeesLabelledGoroutines(t *testing.T) {
	stop := make(chan struct{})
	started := make(chan struct{})
	pprof.Do(context.Background(), pprof.Labels("plugin", "demo_plugin", "step", "start"), func(ctx context.Context) {
		for range 3 {
			go func() {
				started <- struct{}{}
				<-stop
			}()
		}
	})
	for range 3 {
		<-started
	}
	defer close(stop)
	if n := Census().ByPlugin["demo_plugin"]; n != 3 {
		t.Fatalf("demo_plugin goroutines = %d, want 3", n)
	}
	col := NewCollector()
	clock := time.Unix(0, 0)
	col.now = func() time.Time { return clock }
	calls := 0
	col.count = func() Counts { calls++; return Census() }
	reg := prometheus.NewRegistry()
	reg.MustRegister(col)
	want := "# HELP vitals_plugin_goroutines Goroutines started, directly or not, by an in-process plugin's lifecycle steps (pprof label plugin).\n# TYPE vitals_plugin_goroutines gauge\nvitals_plugin_goroutines{plugin=\"demo_plugin\"} 3\n"
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "vitals_plugin_goroutines"); err != nil {
		t.Fatal(err)
	}
	_, _ = reg.Gather()
	if calls != 1 {
		t.Fatalf("census taken %d times within the minimum interval", calls)
	}
	clock = clock.Add(6 * time.Second)
	_, _ = reg.Gather()
	if calls != 2 {
		t.Fatalf("census not retaken after the interval: %d", calls)
	}
}
