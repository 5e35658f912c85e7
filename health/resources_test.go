package health_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/probes"
)

// processSeries returns how many vitals_ai_process_* series plugin id has.
func processSeries(t *testing.T, e *health.Engine, id string) int {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e.Metrics())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "vitals_ai_process_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "plugin" && l.GetValue() == id {
					n++
				}
			}
		}
	}
	return n
}

// A server the agent itself runs on loopback (an in-process plugin) has no
// process of its own: no process series, not the agent's CPU and memory.
func TestInProcessServerExportsNoProcessSeries(t *testing.T) {
	_, srv := sim(t, probes.KindLlamaCpp, 1)
	cfg := fastConfig()
	cfg.Synthetic = false
	r := newRig(t, cfg, func(o *health.Options) {
		o.FindPID = func(port int) (int, error) { return probes.FindListener(nil, port) }
	})
	r.e.Upsert(target("inproc", probes.KindLlamaCpp, srv.URL))
	r.await("inproc", "checked twice with resources", func(vs []health.Status) bool { return len(vs) >= 2 })
	if n := processSeries(t, r.e, "inproc"); n != 0 {
		t.Fatalf("%d process series for a server the agent itself runs, want 0", n)
	}
}

// The series of a process that is gone disappear: with the server down,
// and with the server answering but its process gone.
func TestDeadProcessSeriesDisappear(t *testing.T) {
	for _, tc := range []struct {
		name       string
		serverDown bool
	}{{"server down", true}, {"process gone", false}} {
		t.Run(tc.name, func(t *testing.T) {
			s, srv := sim(t, probes.KindLlamaCpp, 1)
			proc := exec.Command("sleep", "300")
			if err := proc.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = proc.Process.Kill(); _ = proc.Wait() })
			cfg := fastConfig()
			cfg.Synthetic = false
			r := newRig(t, cfg)
			tg := target("p", probes.KindLlamaCpp, srv.URL)
			tg.PID = proc.Process.Pid
			r.e.Upsert(tg)
			r.await("p", "healthy", func(vs []health.Status) bool { return len(vs) >= 1 })
			if n := processSeries(t, r.e, "p"); n != 2 {
				t.Fatalf("%d process series while the process runs, want 2 (cpu, rss)", n)
			}
			if err := proc.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = proc.Wait()
			if tc.serverDown {
				s.SetDown(true)
			}
			// Two more checks: the first may have started before the kill.
			r.mu.Lock()
			seen := len(r.verdicts["p"])
			r.mu.Unlock()
			r.await("p", "checked twice after the kill", func(vs []health.Status) bool { return len(vs) >= seen+2 })
			if n := processSeries(t, r.e, "p"); n != 0 {
				t.Fatalf("%d process series for a dead process, want 0", n)
			}
		})
	}
}
