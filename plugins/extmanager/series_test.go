package extmanager_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/probes"
)

// The per-target cost of /metrics, as a scrape sees it: 1000 targets, the
// shipped probes (liveness, readiness, resources), all checked and
// healthy, then one gather of the agent's registry in the text format a
// Prometheus without native histograms asks for. The goals: at most 20
// series per target (a state is one series, not one per state; no
// duration histogram for the resource probe, nor by default for
// readiness) and at most 1 MB of text at 1000 targets, with ids of six
// characters.
func TestSeriesPerTarget(t *testing.T) {
	const targets = 1000
	r, _ := fleet(t, targets, "2s", 1)

	base := exposition(t, r)
	perPlugin := map[string]int{}
	series := 0
	for _, line := range strings.Split(string(base), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		if strings.Contains(line, `plugin="t`) {
			series++
			name := line[:strings.IndexAny(line, "{ ")]
			perPlugin[name]++
		}
	}
	per := float64(series) / targets
	t.Logf("%d targets: %.1f series per target, %d bytes (%.2f MB) of text", targets, per, len(base), float64(len(base))/1e6)
	for name, n := range perPlugin {
		t.Logf("  %s: %.1f per target", name, float64(n)/targets)
	}
	if per > 20 {
		t.Errorf("%.1f series per target, want at most 20", per)
	}
	if len(base) > 1e6 {
		t.Errorf("one scrape at %d targets is %d bytes of text, want at most 1 MB", targets, len(base))
	}
}

// fleet starts an ExtManager with n openai targets of one aisim server
// (ids t00000...), checked every interval with the shipped probes, and
// waits until each is healthy and has been checked at least checks
// times. The catalog's events are drained. It returns the config's
// targets too, for a reload.
func fleet(t testing.TB, n int, interval string, atLeast int) (*rig, string) {
	t.Helper()
	_, url := simServer(t, probes.KindOpenAI)
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "  - {id: t%05d, endpoint: %q, kind: openai}\n", i, url)
	}
	targets := b.String()
	r := start(t, fleetSection(interval, targets))
	// The catalog's events are not the subject: drain them so that the
	// rig's buffer never holds the catalog up.
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		for {
			select {
			case <-r.evs:
			case <-done:
				return
			}
		}
	}()
	states := map[health.State]int{}
	if !agenttest.Within(120*time.Second, every(200*time.Millisecond, func() bool {
		clear(states)
		for i := range n {
			p, ok := r.e.Catalog().Get(fmt.Sprintf("t%05d", i))
			if !ok || p.Health == nil {
				states[""]++
				continue
			}
			states[p.Health.State]++
		}
		return states[health.StateHealthy] == n
	})) {
		t.Fatalf("targets by state: %v, want all %d healthy", states, n)
	}
	least := 0
	if !agenttest.Within(120*time.Second, every(500*time.Millisecond, func() bool {
		least, _ = checks(t, r.metrics)
		return least >= atLeast
	})) {
		t.Fatalf("the fewest liveness checks of a target: %d, want %d", least, atLeast)
	}
	return r, targets
}

func fleetSection(interval, targets string) string {
	return fmt.Sprintf("directory: \"\"\nbus: {enabled: false}\nhealth: {interval: %s, start_spread: 0, jitter: 0}\ntargets:\n%s", interval, targets)
}

// every is cond asked at most once per d (a gather of a thousand targets
// is not free); in between it is false.
func every(d time.Duration, cond func() bool) func() bool {
	var last time.Time
	return func() bool {
		if time.Since(last) < d {
			return false
		}
		last = time.Now()
		return cond()
	}
}

// checks are the fewest liveness probes any target of g has had, and
// all of them.
func checks(t testing.TB, g prometheus.Gatherer) (least, total int) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	least = -1
	for _, mf := range mfs {
		if mf.GetName() != "vitals_ai_probe_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var probe, result string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "probe":
					probe = l.GetValue()
				case "result":
					result = l.GetValue()
				}
			}
			if probe == probes.Liveness && result == "success" {
				total += int(m.GetCounter().GetValue())
				if n := int(m.GetCounter().GetValue()); least < 0 || n < least {
					least = n
				}
			}
		}
	}
	return least, total
}

// prometheusAccept is the Accept header of Debian's Prometheus 2.42
// without native histograms, as it sends it with every scrape.
const prometheusAccept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"

// BenchmarkScrape is one /metrics scrape of the ExtManager's registry as
// Prometheus 2.42 makes it: the agent's /metrics handler, that Accept
// header, gzip. Each target is checked a few times first, so
// that its histograms hold a spread of latencies, and then every hour,
// so that the checks do not run beside the scrapes. It reports the
// series (text lines) of one scrape and the time per series.
//
//	go test -run '^$' -bench Scrape -benchmem -count 6 ./plugins/extmanager/ | tee scrape.txt; benchstat scrape.txt
func BenchmarkScrape(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("targets=%d", n), func(b *testing.B) {
			r, targets := fleet(b, n, "1s", 3)
			s, err := agent.NewSection(fleetSection("1h", targets))
			if err != nil {
				b.Fatal(err)
			}
			if err := r.e.Reload(context.Background(), s); err != nil {
				b.Fatal(err)
			}
			// The checks already due run at the old interval once more.
			last, since := -1, time.Now()
			if !agenttest.Within(60*time.Second, every(500*time.Millisecond, func() bool {
				if _, n := checks(b, r.metrics); n != last {
					last, since = n, time.Now()
				}
				return time.Since(since) > 2*time.Second
			})) {
				b.Fatal("the checks did not settle at the new interval")
			}
			series := 0
			for _, line := range strings.Split(string(exposition(b, r)), "\n") {
				if line != "" && line[0] != '#' {
					series++
				}
			}
			h := agent.MetricsHandler(r.metrics, slog.Default())
			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			req.Header.Set("Accept", prometheusAccept)
			req.Header.Set("Accept-Encoding", "gzip")
			w := &discard{h: http.Header{}}
			_, before := checks(b, r.metrics)
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime(b)
			for b.Loop() {
				clear(w.h)
				w.n = 0
				h.ServeHTTP(w, req)
			}
			cpu := cpuTime(b) - cpu0
			if w.code != 0 && w.code != http.StatusOK {
				b.Fatalf("status %d", w.code)
			}
			if _, after := checks(b, r.metrics); after != before {
				b.Logf("%d checks ran beside the scrapes", after-before)
			}
			b.ReportMetric(float64(series), "series")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/float64(series), "cpu-ns/series")
			b.ReportMetric(float64(w.n), "gzip-B")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(series), "ns/series")
		})
	}
}

// cpuTime is the process's CPU time (user and system) so far: on a
// shared machine it measures the scrapes better than the wall clock.
func cpuTime(t testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// discard is a ResponseWriter that counts the bytes of the body.
type discard struct {
	h    http.Header
	n    int
	code int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) WriteHeader(code int)        { d.code = code }
func (d *discard) Write(p []byte) (int, error) { d.n += len(p); return len(p), nil }

// exposition gathers r's registry and encodes it as text.
func exposition(t testing.TB, r *rig) []byte {
	t.Helper()
	mfs, err := r.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}
