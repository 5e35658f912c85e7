package main

import (
	"debug/buildinfo"
	"io"
	"net/http"
	"os/exec"
	"runtime/debug"
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

// series returns the lines of text for the metric name (no comments).
func series(text, name string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, name+"{") || strings.HasPrefix(l, name+" ") {
			out = append(out, l)
		}
	}
	return out
}

func TestBuildInfoCarriesTheRevision(t *testing.T) {
	bi, err := buildinfo.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	wantRev, wantModified := vcsStamp(bi, "")
	p := startBinary(t)
	addr := p.address(t)
	got := series(scrape(t, addr), "vitals_build_info")
	if len(got) != 1 {
		t.Fatalf("vitals_build_info series: %q", got)
	}
	for _, l := range []string{`revision="` + wantRev + `"`, `modified="` + wantModified + `"`, `version="`, `goversion="go`} {
		if !strings.Contains(got[0], l) {
			t.Errorf("%s lacks %s", got[0], l)
		}
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
	text := scrape(t, addr)
	for _, want := range []string{
		`vitals_bus_dropped_total{reason="publish_queue_full"} 0`,
		`vitals_bus_dropped_total{reason="subscriber_queue_full"} 0`,
		`vitals_bus_malformed_total{reason="envelope"} 0`,
		`vitals_bus_malformed_total{reason="frames"} 0`,
		`vitals_bus_denied_total{operation="publish",plugin="extmanager"} 0`,
		`vitals_bus_denied_total{operation="subscribe",plugin="extmanager"} 0`,
		`vitals_bus_reconnects_total{socket="pub"} 0`,
		`vitals_bus_reconnects_total{socket="sub"} 0`,
	} {
		name, _, _ := strings.Cut(want, "{")
		if !strings.Contains(text, want+"\n") {
			t.Errorf("/metrics lacks %s; has %q", want, series(text, name))
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
