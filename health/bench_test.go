package health_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/procfs"
	"github.com/vitals-dev/vitals/e2e/e2etest"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/exporters/telemetry"
	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/internal/h1"
	"github.com/vitals-dev/vitals/probes"
)

// The comparisons below run only with VITALS_HEALTH_BENCH=1, never in the
// normal go test; see BENCHMARKS.section.md for the commands. They need
// the aisim and vitals binaries (VITALS_BENCH_BIN, a directory) and, for
// the comparison, the Debian package prometheus-blackbox-exporter.

func benchOnly(t *testing.T) string {
	t.Helper()
	if os.Getenv("VITALS_HEALTH_BENCH") != "1" {
		t.Skip("benchmark: set VITALS_HEALTH_BENCH=1")
	}
	dir := os.Getenv("VITALS_BENCH_BIN")
	if dir == "" {
		t.Fatal("VITALS_BENCH_BIN must name a directory with the aisim and vitals binaries")
	}
	return dir
}

// startProc starts a process and waits until url answers 200.
func startProc(t *testing.T, url string, name string, args ...string) *exec.Cmd {
	t.Helper()
	p := e2etest.Start(t, name, args...)
	e2etest.WaitHTTP(context.Background(), t, url, 30*time.Second)
	return p.Cmd
}

// procCPU returns a process's user+system CPU seconds from /proc.
func procCPU(t *testing.T, pid int) float64 {
	t.Helper()
	v, err := e2etest.ProcCPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// procStatus reads a process's /proc/<pid>/status.
func procStatus(t *testing.T, pid int) procfs.ProcStatus {
	t.Helper()
	st, err := e2etest.ProcStatus(pid)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func selfCPU() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// livenessConfig checks liveness only, as blackbox_exporter's http prober
// does one GET.
func livenessConfig(interval time.Duration) health.Config {
	c := health.DefaultConfig()
	c.Interval, c.UnhealthyInterval = agent.Duration(interval), agent.Duration(interval)
	c.Readiness, c.Resources, c.Synthetic = false, false, false
	c.Concurrency = 64
	return c
}

// TestBenchLivenessVsBlackbox: CPU-seconds per 1000 liveness probes of the
// same loopback server (aisim, openai kind, GET /v1/models), the engine in
// this process (getrusage deltas; the server runs in its own process) and
// blackbox_exporter driven through /probe, measured from /proc.
func TestBenchLivenessVsBlackbox(t *testing.T) {
	bin := benchOnly(t)
	const probesN = 20000
	sport := e2etest.FreePort(t)
	server := fmt.Sprintf("http://127.0.0.1:%d", sport)
	startProc(t, server+"/v1/models", filepath.Join(bin, "aisim"), "-kind", "openai", "-listen", fmt.Sprintf("127.0.0.1:%d", sport))

	// The engine: 100 targets at 50 ms is 2000 probes/s. Bare, then as
	// the agent runs it: every check and probe a span recorded by the
	// agent's tracer provider (zPages always on), then with the SQLite
	// history too.
	for _, v := range []struct {
		name          string
		traced, store bool
	}{{"bare", false, false}, {"traced", true, false}, {"traced_store", true, true}} {
		cfg := livenessConfig(50 * time.Millisecond)
		var n atomic.Int64
		done := make(chan struct{})
		var once sync.Once
		o := health.Options{Config: cfg, Client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}},
			OnVerdict: func(string, health.Status) {
				if n.Add(1) == probesN {
					once.Do(func() { close(done) })
				}
			}}
		if v.traced {
			tp, err := telemetry.Setup(context.Background(), telemetry.Options{ServiceName: "vitals"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			o.TracerProvider = tp.TracerProvider()
		}
		if v.store {
			db := openStore(t)
			h, err := health.OpenHistory(context.Background(), db, cfg.History, nil)
			if err != nil {
				t.Fatal(err)
			}
			o.History = h
		}
		e := health.New(o)
		for i := range 100 {
			e.Upsert(health.Target{ID: fmt.Sprintf("t%03d", i), Mode: health.ModeHTTP, Kind: probes.KindOpenAI, Endpoint: server})
		}
		cpu0, t0 := selfCPU(), time.Now()
		e.Start()
		<-done
		cpu := selfCPU() - cpu0
		wall := time.Since(t0)
		_ = e.Stop(context.Background())
		t.Logf("vitals engine (%s): %d probes in %s, %.3f CPU-s, %.4f CPU-s per 1000 probes",
			v.name, probesN, wall.Round(time.Millisecond), cpu, cpu/probesN*1000)
		benchResult("engine_"+v.name+"_cpu_per_1000", cpu/probesN*1000)
	}

	// blackbox_exporter, probing the same server the same number of times.
	bb, err := exec.LookPath("prometheus-blackbox-exporter")
	if err != nil {
		t.Skip("prometheus-blackbox-exporter not installed (Debian package prometheus-blackbox-exporter)")
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "blackbox.yml")
	if err := os.WriteFile(cfgPath, []byte("modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n    http:\n      preferred_ip_protocol: ip4\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bport := e2etest.FreePort(t)
	burl := fmt.Sprintf("http://127.0.0.1:%d", bport)
	cmd := startProc(t, burl+"/metrics", bb, "--config.file="+cfgPath, fmt.Sprintf("--web.listen-address=127.0.0.1:%d", bport), "--log.level=error")
	probeURL := burl + "/probe?module=http_2xx&target=" + server + "/v1/models"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
	cpu0, t0 := procCPU(t, cmd.Process.Pid), time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= probesN {
				resp, err := client.Get(probeURL)
				if err != nil {
					failed.Add(1)
					continue
				}
				sc := bufio.NewScanner(resp.Body)
				for sc.Scan() {
					if sc.Text() == "probe_success 0" {
						failed.Add(1)
					}
				}
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	cpu := procCPU(t, cmd.Process.Pid) - cpu0
	t.Logf("blackbox_exporter: %d probes (%d failed) in %s, %.3f CPU-s, %.4f CPU-s per 1000 probes",
		probesN, failed.Load(), time.Since(t0).Round(time.Millisecond), cpu, cpu/probesN*1000)
	benchResult("blackbox_cpu_per_1000", cpu/probesN*1000)
}

// TestBenchAgentMemory: resident memory of the vitals agent binary
// watching 100 targets at 1 s with the SQLite history on, in steady state:
// after every plugin's history ring has filled (256 checks at 1 s) and the
// store has grown for as long. The baseline, run beside it, is the same
// binary and config with no targets: what the process costs before it
// watches anything.
func TestBenchAgentMemory(t *testing.T) {
	bin := benchOnly(t)
	sport := e2etest.FreePort(t)
	server := fmt.Sprintf("http://127.0.0.1:%d", sport)
	startProc(t, server+"/v1/models", filepath.Join(bin, "aisim"), "-kind", "openai", "-listen", fmt.Sprintf("127.0.0.1:%d", sport))
	const ring, steady = 256, 280 * time.Second // ring × 1 s, and some
	agent := func(targets int) *exec.Cmd {
		dir := t.TempDir()
		var b strings.Builder
		aport := e2etest.FreePort(t)
		fmt.Fprintf(&b, "core:\n  log: {level: warn}\n  lifecycle: {watch_config: false}\n  api_gateway:\n    listen: 127.0.0.1:%d\n    plugins:\n      extmanager:\n", aport)
		fmt.Fprintf(&b, "        directory: \"\"\n        bus: {enabled: false}\n        health: {interval: 1s, history: {path: health.db, ring: %d}}\n        targets:", ring)
		if targets == 0 {
			b.WriteString(" []\n")
		} else {
			b.WriteString("\n")
		}
		for i := range targets {
			fmt.Fprintf(&b, "          - {id: t%03d, endpoint: %q, kind: openai}\n", i, server)
		}
		cfgPath := filepath.Join(dir, "core.yaml")
		if err := os.WriteFile(cfgPath, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		return startProc(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", aport), filepath.Join(bin, "vitals"), "--config", cfgPath)
	}
	idle, busy := agent(0), agent(100)
	type sample struct{ rss, anon, file int64 }
	read := func(c *exec.Cmd) sample {
		pid := c.Process.Pid
		st := procStatus(t, pid)
		return sample{int64(st.VmRSS), int64(st.RssAnon), int64(st.RssFile)}
	}
	var at30 sample
	var peak int64
	start := time.Now()
	for time.Since(start) < steady {
		time.Sleep(time.Second)
		s := read(busy)
		peak = max(peak, s.rss)
		if at30.rss == 0 && time.Since(start) >= 30*time.Second {
			at30 = s
		}
	}
	base, last := read(idle), read(busy)
	mib := func(v int64) float64 { return float64(v) / (1 << 20) }
	t.Logf("vitals agent, no targets (baseline): RSS %.1f MiB (%.1f MiB anonymous, %.1f MiB file-backed: the binary's pages)",
		mib(base.rss), mib(base.anon), mib(base.file))
	t.Logf("vitals agent, 100 targets at 1s, after 30 s: RSS %.1f MiB (%.1f MiB anonymous, %.1f MiB file-backed)",
		mib(at30.rss), mib(at30.anon), mib(at30.file))
	t.Logf("vitals agent, 100 targets at 1s, after %s (rings full): RSS %.1f MiB (%.1f MiB anonymous, %.1f MiB file-backed), %.1f MiB peak; %.2f× the baseline",
		steady, mib(last.rss), mib(last.anon), mib(last.file), mib(peak), float64(last.rss)/float64(base.rss))
	benchResult("agent_rss_mib", mib(last.rss))
	benchResult("agent_anon_mib", mib(last.anon))
	benchResult("agent_idle_rss_mib", mib(base.rss))
}

// TestBenchSchedulerLag: scheduler lag with 1000 targets at 1 s for 20 s,
// the engine in this process against one aisim process. It reports the lag
// quantiles and checks that the scheduler kept up with what it measured:
// every target was checked, and at least half of the 20 checks per target
// due after the warm-up ran (the lag itself is a figure, not a bound).
func TestBenchSchedulerLag(t *testing.T) {
	bin := benchOnly(t)
	sport := e2etest.FreePort(t)
	server := fmt.Sprintf("http://127.0.0.1:%d", sport)
	startProc(t, server+"/v1/models", filepath.Join(bin, "aisim"), "-kind", "openai", "-listen", fmt.Sprintf("127.0.0.1:%d", sport))
	cfg := livenessConfig(time.Second)
	var mu sync.Mutex
	var lags []time.Duration
	warm := time.Now().Add(2 * time.Second) // the first, spread checks open connections
	e := health.New(health.Options{Config: cfg, Client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}},
		Lag: func(d time.Duration) {
			if time.Now().After(warm) {
				mu.Lock()
				lags = append(lags, d)
				mu.Unlock()
			}
		}})
	for i := range 1000 {
		e.Upsert(health.Target{ID: fmt.Sprintf("t%04d", i), Mode: health.ModeHTTP, Kind: probes.KindOpenAI, Endpoint: server})
	}
	e.Start()
	time.Sleep(22 * time.Second)
	_ = e.Stop(context.Background())
	for i := range 1000 {
		id := fmt.Sprintf("t%04d", i)
		if st, ok := e.Status(id); !ok || st.Checks == 0 {
			t.Errorf("%s was never checked in 22 s", id)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if want := 1000 * 20 / 2; len(lags) < want {
		t.Fatalf("%d checks after the warm-up, want at least %d (half of 1000 targets × 20 s at 1 s)", len(lags), want)
	}
	slices.Sort(lags)
	q := func(p float64) time.Duration { return lags[int(p*float64(len(lags)-1))] }
	t.Logf("scheduler lag, 1000 targets at 1s, %d checks: p50 %s, p99 %s, max %s", len(lags), q(0.5), q(0.99), lags[len(lags)-1])
	benchResult("lag_p99_ms", float64(q(0.99))/float64(time.Millisecond))
}

func benchResult(name string, v float64) {
	if f := os.Getenv("VITALS_BENCH_OUT"); f != "" {
		out, err := os.OpenFile(f, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintf(out, "%s %g\n", name, v)
			out.Close()
		}
	}
}

// BenchmarkLivenessCheck is one liveness check of a loopback aisim server
// through the engine's scheduler path, for benchstat: bare, and traced as
// the agent runs it (every check a span recorded for zPages, its probes
// events on it; the request carries traceparent). Each iteration changes the
// target, which triggers a check at once (the interval is an hour). The
// client is the shipped default client's: h1's transport, its buffers, the
// probes' redirect policy.
func BenchmarkLivenessCheck(b *testing.B) {
	_, srv := simB(b)
	// bare: no tracer provider. traced: the agent's, as it ships (spans to
	// zPages only, a check's probes events on its span, requests carry
	// trace context). exported: the same SDK provider as when a trace
	// exporter is set (a span per probe, a CLIENT span per request).
	for _, name := range []string{"bare", "traced", "exported"} {
		traced := name != "bare"
		b.Run(name, func(b *testing.B) {
			cfg := livenessConfig(time.Hour)
			ch := make(chan struct{}, 1)
			o := health.Options{Config: cfg, Client: &http.Client{Transport: &h1.Transport{Fallback: http.DefaultTransport, MaxIdleConnsPerHost: 4, BufferSize: 1 << 10}, CheckRedirect: probes.SameHostRedirect}, OnVerdict: func(string, health.Status) {
				select {
				case ch <- struct{}{}:
				default:
				}
			}}
			if traced {
				tp, err := telemetry.Setup(context.Background(), telemetry.Options{ServiceName: "vitals"})
				if err != nil {
					b.Fatal(err)
				}
				defer tp.Shutdown(context.Background())
				o.TracerProvider = tp.TracerProvider()
				if name == "exported" {
					o.TracerProvider = tp.Tracer
				}
			}
			e := health.New(o)
			target := health.Target{ID: "b", Mode: health.ModeHTTP, Kind: probes.KindOpenAI, Endpoint: srv, Model: "warm-up"}
			e.Upsert(target)
			e.Start()
			defer func() { _ = e.Stop(context.Background()) }()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				target.Model = strconv.Itoa(i % 2)
				e.Upsert(target)
				<-ch
			}
		})
	}
}
