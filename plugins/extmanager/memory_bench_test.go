//go:build bench

package extmanager_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	dto "github.com/prometheus/client_model/go"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/catalog"
	"github.com/vitals-dev/vitals/exporters/telemetry"
	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/plugins/extmanager"
	"github.com/vitals-dev/vitals/probes"
)

// TestMemoryPerTarget measures, inside one process, what the agent's
// ExtManager holds per target at steady state: MEMORY_TARGETS (1000)
// aisim OpenAI-shaped targets on one loopback server with the shipped
// probes at a 10 s interval (what a target holds does not depend on it,
// and the test leaves the machine's CPU to others), all checked and
// healthy, then every history ring filled to its 256 checks with copies
// of the plugin's own last check, at the times and with the durations of
// checks run at 1 s (a ring fills in 256 s at 1 s; the copies are what it
// would hold). As the shipped agent does, it traces with the telemetry
// providers of no exporter (spans stay in the process and zPages; the
// latency series keep the checks' trace ids as exemplars), and its
// registry is gathered once, as a scrape does (the catalog's series are
// made at the first). It reports the live
// heap per target by runtime.MemStats after a collection, against the
// same process before the ExtManager started, and with MEMORY_PROFILE set
// to a directory saves the heap profile there (go tool pprof -top
// -sample_index=inuse_space). The aisim server's side of the
// connections is in the same process; the profile tells it apart.
//
//	go test -tags bench -run TestMemoryPerTarget -v ./plugins/extmanager/
func TestMemoryPerTarget(t *testing.T) {
	targets := 1000
	if v := os.Getenv("MEMORY_TARGETS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			t.Fatalf("MEMORY_TARGETS=%q: want 1 to 10000", v)
		}
		targets = n
	}
	// A heap profile fine enough to attribute a few KiB a target.
	defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
	runtime.MemProfileRate = 4096
	_, url := simServer(t, probes.KindOpenAI)
	tel, err := telemetry.Setup(context.Background(), telemetry.Options{ServiceName: "vitals"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	before := heap()
	var b strings.Builder
	b.WriteString("directory: \"\"\nbus: {enabled: false}\nhealth: {interval: 10s, unhealthy_interval: 10s}\ntargets:\n")
	for i := range targets {
		fmt.Fprintf(&b, "  - {id: t%05d, endpoint: %q, kind: openai}\n", i, url)
	}
	r := startWith(t, b.String(), map[string]any{tracerProvider: tel.TracerProvider()})
	// The rig's buffer of catalog events is the test's, not the agent's.
	rigBuffer := uint64(cap(r.evs)) * uint64(unsafe.Sizeof(catalog.Event{}))
	before.HeapAlloc += rigBuffer
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
	id := func(i int) string { return fmt.Sprintf("t%05d", i) }
	if !agenttest.Within(120*time.Second, func() bool {
		for i := range targets {
			if p, ok := r.e.Catalog().Get(id(i)); !ok || p.Health == nil || p.Health.State != health.StateHealthy {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("not every one of %d targets healthy", targets)
	}
	checked := heap()
	h := r.e.Engine().History()
	ring := r.e.Engine().Config().History.Ring
	far := time.Now().Add(time.Hour)
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range targets {
		cs, _, err := h.Query(context.Background(), id(i), time.Time{}, far, ring)
		if err != nil || len(cs) == 0 {
			t.Fatalf("%s: %d checks in history, %v", id(i), len(cs), err)
		}
		last := cs[0]
		c := last
		c.Probes = slices.Clone(last.Probes)
		for range ring - len(cs) {
			// As the scheduler runs them: a second apart give or take its
			// 5 % jitter, the engine numbering about a thousand checks of
			// all targets between two, the durations varying.
			step := time.Second + time.Duration((2*rnd.Float64()-1)*0.05*float64(time.Second))
			c.Seq += int64(step / time.Millisecond)
			for i, p := range last.Probes {
				c.Probes[i].Duration = p.Duration*7/10 + time.Duration(rnd.Int64N(int64(p.Duration)*6/10+1))
			}
			c.Started = c.Started.Add(step)
			c.Duration = last.Duration - last.Latency + slowest(c.Probes)
			c.Time, c.Latency = c.Started.Add(c.Duration), slowest(c.Probes)
			h.Record(c, nil)
		}
	}
	if _, err := r.metrics.Gather(); err != nil {
		t.Fatal(err)
	}
	full := heap()
	per := func(a, b runtime.MemStats, f func(runtime.MemStats) uint64) float64 {
		return (float64(f(a)) - float64(f(b))) / float64(targets) / 1024
	}
	alloc := func(m runtime.MemStats) uint64 { return m.HeapAlloc }
	// What a scrape holds while it runs: all of a gather, or the
	// largest of its families gathered one at a time.
	mfs, err := r.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	gathered := heap()
	runtime.KeepAlive(mfs)
	base := heap()
	var most uint64
	if err := r.metrics.GatherEach(func(mf *dto.MetricFamily) error {
		most = max(most, heap().HeapAlloc)
		runtime.KeepAlive(mf)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// One scrape as Prometheus asks for it, into a writer that keeps
	// nothing, so that only the scrape's own allocations are counted.
	srv := agent.MetricsHandler(r.metrics, slog.New(slog.DiscardHandler))
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0")
	req.Header.Set("Accept-Encoding", "gzip")
	var sink countingWriter
	srv.ServeHTTP(&sink, req) // the gzip writer's pool filled
	sink = countingWriter{}
	var scraped runtime.MemStats
	runtime.ReadMemStats(&scraped)
	srv.ServeHTTP(&sink, req)
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	t.Logf("per target: a gather holds %.2f KiB, a scrape a family at a time at most %.2f KiB; a scrape allocates %.2f KiB (%d bytes gzipped)",
		per(gathered, base, alloc), (float64(most)-float64(base.HeapAlloc))/float64(targets)/1024,
		(float64(after.TotalAlloc)-float64(scraped.TotalAlloc))/float64(targets)/1024, sink.n)
	stack := func(m runtime.MemStats) uint64 { return m.StackInuse }
	t.Logf("the rig's event buffer, not counted: %.1f MiB", mib(rigBuffer))
	t.Logf("%d targets, ring %d: live heap %.1f MiB before, %.1f checked once or more, %.1f rings full",
		targets, ring, mib(before.HeapAlloc), mib(checked.HeapAlloc), mib(full.HeapAlloc))
	inuse := func(m runtime.MemStats) uint64 { return m.HeapInuse }
	t.Logf("per target: heap %.2f KiB (of it the rings filled from one check: %.2f KiB), stacks %.2f KiB, %.2f goroutines",
		per(full, before, alloc), per(full, checked, alloc), per(full, before, stack),
		float64(runtime.NumGoroutine())/float64(targets))
	// The spans that hold the heap, with the room left in them.
	t.Logf("per target: heap spans in use %.2f KiB", per(full, before, inuse))
	if dir := os.Getenv("MEMORY_PROFILE"); dir != "" {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("inprocess-%d-heap.pprof", targets)))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMemoryPerConnection measures what one idle keep-alive connection
// costs the client that keeps it: MEMORY_CONNS (1000) connections, each to
// its own loopback listener in another process (so that only the client's
// side is in this one), opened by one request each and left idle in the
// ExtManager's transport. Heap and goroutine stacks per connection, by
// runtime.MemStats after a collection.
//
//	go test -tags bench -run TestMemoryPerConnection -v ./plugins/extmanager/
func TestMemoryPerConnection(t *testing.T) {
	conns := 1000
	if v := os.Getenv("MEMORY_CONNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 5000 {
			t.Fatalf("MEMORY_CONNS=%q: want 1 to 5000", v)
		}
		conns = n
	}
	type transport interface {
		http.RoundTripper
		CloseIdleConnections()
	}
	for _, tc := range []struct {
		name string
		tr   func() transport
	}{
		{"net/http, default buffers (4 KiB each way)", func() transport {
			return &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: 4, IdleConnTimeout: time.Minute, DisableCompression: true}
		}},
		{"net/http, 1 KiB buffers", func() transport {
			return &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: 4, IdleConnTimeout: time.Minute, DisableCompression: true,
				ReadBufferSize: 1 << 10, WriteBufferSize: 1 << 10}
		}},
		{"the default client (internal/h1)", func() transport { return extmanager.NewDefaultClient(4).Transport.(transport) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addrs := listeners(t, conns)
			tr := tc.tr()
			c := &http.Client{Transport: tr}
			defer tr.CloseIdleConnections()
			before := heap()
			g0 := runtime.NumGoroutine()
			var wg sync.WaitGroup
			sem := make(chan struct{}, 32)
			for _, a := range addrs {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					resp, err := c.Get("http://" + a + "/v1/models")
					if err != nil {
						t.Error(err)
						return
					}
					_, _ = resp.Body.Read(make([]byte, 512))
					resp.Body.Close()
				}()
			}
			wg.Wait()
			after := heap()
			g := runtime.NumGoroutine() - g0
			t.Logf("%d idle connections: heap %.2f KiB, stacks %.2f KiB, %.2f goroutines a connection",
				conns, (float64(after.HeapAlloc)-float64(before.HeapAlloc))/float64(conns)/1024,
				(float64(after.StackInuse)-float64(before.StackInuse))/float64(conns)/1024, float64(g)/float64(conns))
		})
	}
}

// listeners returns n loopback addresses whose connections another
// process accepts and answers: the test binary itself, run again as
// TestMemoryServer.
func listeners(t *testing.T, n int) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestMemoryServer$")
	cmd.Env = append(os.Environ(), "MEMORY_SERVE="+strconv.Itoa(n))
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); _ = cmd.Wait() })
	sc := bufio.NewScanner(out)
	var addrs []string
	for len(addrs) < n && sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "listen "); ok {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) < n {
		t.Fatalf("server: %d of %d addresses: %v", len(addrs), n, sc.Err())
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return addrs
}

// TestMemoryServer is the other process of TestMemoryPerConnection: with
// MEMORY_SERVE=n it serves n loopback listeners, prints their addresses
// and returns when its standard input closes.
func TestMemoryServer(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv("MEMORY_SERVE"))
	if err != nil {
		t.Skip("the server of TestMemoryPerConnection")
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"object":"list","data":[{"id":"m","object":"model"}]}`))
	})}
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("listen %s\n", ln.Addr())
		go func() { _ = srv.Serve(ln) }()
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = srv.Close()
}

// heap is the memory statistics after two collections.
func heap() runtime.MemStats {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

// countingWriter is an http.ResponseWriter that counts what it is sent.
type countingWriter struct {
	h http.Header
	n int
}

func (w *countingWriter) Header() http.Header {
	if w.h == nil {
		w.h = http.Header{}
	}
	return w.h
}
func (w *countingWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }
func (w *countingWriter) WriteHeader(int)             {}

func mib(v uint64) float64 { return float64(v) / (1 << 20) }

// BenchmarkTransportBuffers: the CPU side of smaller connection buffers,
// one keep-alive GET after another against aisim, for a short answer
// (OpenAI-shaped /v1/models) and a long one (vLLM's /metrics).
//
//	go test -tags bench -run '^$' -bench TransportBuffers -count 6 ./plugins/extmanager/ | benchstat -col /buffers -
func BenchmarkTransportBuffers(b *testing.B) {
	for _, srv := range []struct {
		name string
		kind probes.Kind
		path string
	}{{"models", probes.KindOpenAI, "/v1/models"}, {"metrics", probes.KindVLLM, "/metrics"}} {
		sim, err := aisim.New(aisim.Config{Kind: srv.kind})
		if err != nil {
			b.Fatal(err)
		}
		ts := httptest.NewServer(sim)
		for _, size := range []int{4 << 10, 1 << 10} {
			b.Run(fmt.Sprintf("answer=%s/buffers=%d", srv.name, size), func(b *testing.B) {
				tr := &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true, ReadBufferSize: size, WriteBufferSize: size}
				defer tr.CloseIdleConnections()
				c := &http.Client{Transport: tr}
				n := int64(0)
				cpu0 := cpuTime(b)
				for b.Loop() {
					resp, err := c.Get(ts.URL + srv.path)
					if err != nil {
						b.Fatal(err)
					}
					m, _ := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					n += m
				}
				b.SetBytes(n / int64(b.N))
				b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
			})
		}
		ts.Close()
		sim.Close()
	}
}

// slowest is the longest duration of the probes that decide the state, the
// check's latency when no synthetic inference ran.
func slowest(ps []health.ProbeOutcome) time.Duration {
	var d time.Duration
	for _, p := range ps {
		if !p.Informational {
			d = max(d, p.Duration)
		}
	}
	return d
}
