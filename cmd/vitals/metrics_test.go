package main

import (
	"debug/buildinfo"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/vitals-dev/vitals/e2e/e2etest"
)

// scrape returns the text of the agent's /metrics.
func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	text, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(text)
}

func TestBuildInfoCarriesTheRevision(t *testing.T) {
	bi, err := buildinfo.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	wantRev, wantModified := vcsStamp(bi, "")
	p := startBinary(t)
	addr := p.address(t)
	got := e2etest.ParseMetrics(t, []byte(scrape(t, addr))).Series("vitals_build_info")
	if len(got) != 1 {
		t.Fatalf("vitals_build_info series: %v", got)
	}
	labels := map[string]string{}
	for _, l := range got[0].GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	if _, ok := labels["version"]; !ok || labels["revision"] != wantRev || labels["modified"] != wantModified || !strings.HasPrefix(labels["goversion"], "go") {
		t.Errorf("vitals_build_info labels %v, want revision %q, modified %q, a version and a goversion", labels, wantRev, wantModified)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	p.wait(t)
}

// TestBusCountersExistAtZero: the counters the README, dashboards and
// alerts use are on /metrics at 0 from the start, before anything has
// been dropped, malformed, denied or reconnected.
func TestBusCountersExistAtZero(t *testing.T) {
	p := startBinary(t)
	addr := p.ready(t)
	m := e2etest.ParseMetrics(t, []byte(scrape(t, addr)))
	for _, want := range []struct {
		name   string
		labels []string
	}{
		{"vitals_bus_dropped_total", []string{"reason", "publish_queue_full"}},
		{"vitals_bus_dropped_total", []string{"reason", "subscriber_queue_full"}},
		{"vitals_bus_malformed_total", []string{"reason", "envelope"}},
		{"vitals_bus_malformed_total", []string{"reason", "frames"}},
		{"vitals_bus_denied_total", []string{"operation", "publish", "plugin", "extmanager"}},
		{"vitals_bus_denied_total", []string{"operation", "subscribe", "plugin", "extmanager"}},
		{"vitals_bus_reconnects_total", []string{"socket", "pub"}},
		{"vitals_bus_reconnects_total", []string{"socket", "sub"}},
	} {
		if v, ok := m.Value(want.name, want.labels...); !ok || v != 0 {
			t.Errorf("/metrics lacks %s%v at 0; has %v", want.name, want.labels, m.Series(want.name))
		}
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	p.wait(t)
}

func TestVCSStamp(t *testing.T) {
	stamped := &debug.BuildInfo{Settings: []debug.BuildSetting{
		{Key: "vcs", Value: "git"},
		{Key: "vcs.revision", Value: "a9df36dd5c5e7bda84e63265f87369b2e5f9be4c"},
		{Key: "vcs.modified", Value: "true"},
	}}
	tests := []struct {
		name          string
		bi            *debug.BuildInfo
		fallback      string
		rev, modified string
	}{
		{"stamped", stamped, "", "a9df36dd5c5e7bda84e63265f87369b2e5f9be4c", "true"},
		{"stamp wins over the link-time revision", stamped, "0123abc", "a9df36dd5c5e7bda84e63265f87369b2e5f9be4c", "true"},
		{"no stamp, link-time revision", &debug.BuildInfo{}, "0123abc", "0123abc", "unknown"},
		{"nothing", nil, "", "unknown", "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rev, modified := vcsStamp(tt.bi, tt.fallback)
			if rev != tt.rev || modified != tt.modified {
				t.Errorf("got %q %q, want %q %q", rev, modified, tt.rev, tt.modified)
			}
		})
	}
}

// TestProcessMetrics: the agent exports client_golang's process series,
// which the dashboards read, each once; its limit on open files is the
// one /proc says the process has.
func TestProcessMetrics(t *testing.T) {
	p := startBinary(t)
	addr := p.address(t)
	m := e2etest.ParseMetrics(t, []byte(scrape(t, addr)))
	for _, name := range []string{
		"process_cpu_seconds_total", "process_open_fds", "process_max_fds",
		"process_virtual_memory_bytes", "process_virtual_memory_max_bytes",
		"process_resident_memory_bytes", "process_start_time_seconds",
		"process_network_receive_bytes_total", "process_network_transmit_bytes_total",
	} {
		if got := m.Series(name); len(got) != 1 {
			t.Errorf("%s: %d series, want 1", name, len(got))
		}
	}
	limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", p.cmd.Process.Pid))
	if err != nil {
		t.Skipf("no /proc to check against: %v", err)
	}
	var soft float64
	for line := range strings.Lines(string(limits)) {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			soft, _ = strconv.ParseFloat(strings.Fields(rest)[0], 64)
		}
	}
	if v, _ := m.Value("process_max_fds"); v != soft || soft == 0 {
		t.Errorf("process_max_fds = %v, /proc's soft limit %v", v, soft)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	p.wait(t)
}

func TestMetricsPassPromtool(t *testing.T) {
	promtool := e2etest.Tool(t, "promtool")
	p := startBinary(t)
	addr := p.ready(t)
	checkDemoAIPlugins(t, addr) // so the AI plugin series exist
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(string(text))
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	p.wait(t)
}

// TestDefaultGOGC: the agent runs its collector at defaultGOGC when the
// environment sets none, and at the environment's when it does, as
// go_gc_gogc_percent reports.
func TestDefaultGOGC(t *testing.T) {
	for _, c := range []struct {
		env  string
		want float64
	}{{"", defaultGOGC}, {"100", 100}, {"75", 75}} {
		t.Setenv("GOGC", c.env)
		if c.env == "" {
			os.Unsetenv("GOGC")
		}
		p := startBinary(t)
		m := e2etest.ParseMetrics(t, []byte(scrape(t, p.address(t))))
		if got, ok := m.Value("go_gc_gogc_percent"); !ok || got != c.want {
			t.Errorf("GOGC=%q: go_gc_gogc_percent %v (%v), want %v", c.env, got, ok, c.want)
		}
	}
}
