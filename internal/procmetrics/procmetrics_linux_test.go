package procmetrics

import (
	"io"
	"math"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
)

// gather returns the registry's families by name.
func gather(t testing.TB, g prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

func value(t testing.TB, mfs map[string]*dto.MetricFamily, name string) float64 {
	t.Helper()
	mf, ok := mfs[name]
	if !ok || len(mf.GetMetric()) != 1 {
		t.Fatalf("%s: not one series in %v", name, mf)
	}
	m := mf.GetMetric()[0]
	if m.GetCounter() != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

func newRegistry(t testing.TB, c prometheus.Collector) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	return reg
}

func TestNewCollectorIsOurs(t *testing.T) {
	if _, ok := NewCollector().(*collector); !ok {
		t.Fatalf("NewCollector on Linux = %T, want *collector", NewCollector())
	}
}

// TestMatchesClientGolang gathers client_golang's process collector, this
// one, and client_golang's again: the same families with the same help and
// type, the counters between the two readings of client_golang's, the
// limits and the start time equal, the memory close.
func TestMatchesClientGolang(t *testing.T) {
	c, err := newCollector()
	if err != nil {
		t.Fatal(err)
	}
	ours := newRegistry(t, c)
	theirs := newRegistry(t, collectors.NewProcessCollector(collectors.ProcessCollectorOpts{ReportErrors: true}))

	before := gather(t, theirs)
	got := gather(t, ours)
	after := gather(t, theirs)

	if len(got) != len(before) {
		t.Errorf("%d families, client_golang's %d", len(got), len(before))
	}
	for name, want := range before {
		mf, ok := got[name]
		if !ok {
			t.Errorf("%s: missing", name)
			continue
		}
		if mf.GetHelp() != want.GetHelp() || mf.GetType() != want.GetType() {
			t.Errorf("%s: help %q type %v, client_golang's %q %v", name, mf.GetHelp(), mf.GetType(), want.GetHelp(), want.GetType())
		}
	}
	for _, name := range []string{
		"process_cpu_seconds_total",
		"process_network_receive_bytes_total",
		"process_network_transmit_bytes_total",
		"process_open_fds",
	} {
		lo, v, hi := value(t, before, name), value(t, got, name), value(t, after, name)
		if v < lo || v > hi {
			t.Errorf("%s = %v, client_golang's %v before and %v after", name, v, lo, hi)
		}
	}
	for _, name := range []string{"process_max_fds", "process_virtual_memory_max_bytes"} {
		if v, want := value(t, got, name), value(t, before, name); v != want {
			t.Errorf("%s = %v, client_golang's %v", name, v, want)
		}
	}
	// client_golang reads the boot time again at each scrape; it moves
	// only when the wall clock is set.
	if v, want := value(t, got, "process_start_time_seconds"), value(t, before, "process_start_time_seconds"); math.Abs(v-want) > 1 {
		t.Errorf("process_start_time_seconds = %v, client_golang's %v", v, want)
	}
	for _, name := range []string{"process_resident_memory_bytes", "process_virtual_memory_bytes"} {
		if v, want := value(t, got, name), value(t, before, name); math.Abs(v-want) > want/4 {
			t.Errorf("%s = %v, client_golang's %v", name, v, want)
		}
	}
}

func TestOpenFDsCountsFilesOpened(t *testing.T) {
	c, err := newCollector()
	if err != nil {
		t.Fatal(err)
	}
	reg := newRegistry(t, c)
	before := value(t, gather(t, reg), "process_open_fds")
	for range 10 {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
	}
	if got := value(t, gather(t, reg), "process_open_fds"); got != before+10 {
		t.Errorf("process_open_fds = %v after opening 10 files, %v before", got, before)
	}
}

// TestCountFDs checks the count of Linux before 6.2 against the size of
// /proc/self/fd, where the kernel has it: one more, the directory's own.
func TestCountFDs(t *testing.T) {
	var st syscall.Stat_t
	if err := syscall.Stat(fdPath, &st); err != nil {
		t.Fatal(err)
	}
	if st.Size == 0 {
		t.Skip("kernel before 6.2: /proc/self/fd has no size to check against")
	}
	n, err := countFDs()
	if err != nil {
		t.Fatal(err)
	}
	if n != int(st.Size)+1 {
		t.Errorf("countFDs = %d, /proc/self/fd's size %d", n, st.Size)
	}
}

func TestMaxFDsIsTheSoftLimit(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Error(err)
		}
	})
	lower := lim
	lower.Cur = 4000
	if lower.Cur > lower.Max {
		lower.Cur = lower.Max
	}
	lower.Cur-- // differs from the soft limit before
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lower); err != nil {
		t.Fatal(err)
	}
	c, err := newCollector()
	if err != nil {
		t.Fatal(err)
	}
	if got := value(t, gather(t, newRegistry(t, c)), "process_max_fds"); got != float64(lower.Cur) {
		t.Errorf("process_max_fds = %v, soft limit %d", got, lower.Cur)
	}
}

func TestCPUAndMemoryGrow(t *testing.T) {
	c, err := newCollector()
	if err != nil {
		t.Fatal(err)
	}
	reg := newRegistry(t, c)
	before := gather(t, reg)

	const size = 64 << 20
	mem := make([]byte, size)
	for i := range mem {
		mem[i] = 1 // resident once written
	}
	if got, was := value(t, gather(t, reg), "process_resident_memory_bytes"), value(t, before, "process_resident_memory_bytes"); got-was < size/2 {
		t.Errorf("process_resident_memory_bytes %v → %v after writing %d bytes", was, got, size)
	}
	runtime.KeepAlive(mem)

	// The counter moves in ticks of 10 ms: spin until it does.
	cpu0 := value(t, before, "process_cpu_seconds_total")
	for x := 0; value(t, gather(t, reg), "process_cpu_seconds_total") == cpu0; x++ {
		for i := range 1 << 20 {
			x ^= i * x
		}
	}
}

// TestNetworkBytesCountLoopback sends 1 MiB to itself over TCP: the
// counters, of the network namespace, move by at least that much, read
// again from the descriptor kept open.
func TestNetworkBytesCountLoopback(t *testing.T) {
	c, err := newCollector()
	if err != nil {
		t.Fatal(err)
	}
	if c.netstat < 0 {
		t.Skip("no /proc/self/net/netstat")
	}
	reg := newRegistry(t, c)
	before := gather(t, reg)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const size = 1 << 20
	got := make(chan int64, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer conn.Close()
		n, _ := io.Copy(io.Discard, conn)
		got <- n
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if n := <-got; n != size {
		t.Fatalf("received %d bytes, sent %d", n, size)
	}

	after := gather(t, reg)
	for _, name := range []string{"process_network_receive_bytes_total", "process_network_transmit_bytes_total"} {
		if d := value(t, after, name) - value(t, before, name); d < size {
			t.Errorf("%s moved by %v after %d bytes over loopback", name, d, size)
		}
	}
}

func TestParseStat(t *testing.T) {
	// A command name with spaces and parentheses; fields after it from a
	// real line, with utime 11, stime 22, starttime 53778, vsize 3133440,
	// rss 381.
	line := "18352 (a) (b c)) R 18347 18347 12465 0 -1 4194304 101 0 0 0 11 22 0 0 20 0 1 0 53778 3133440 381 18446744073709551615 94388292481024 94388292500905 140736648952672 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 94388292516912 94388292518528 94388465721344 140736648956414 140736648956434 140736648956434 140736648957931 0\n"
	s, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if want := (stat{cpuTicks: 33, startTicks: 53778, vsize: 3133440, rssPages: 381}); s != want {
		t.Errorf("parseStat = %+v, want %+v", s, want)
	}
	for _, bad := range []string{
		"",
		"1 (x R 1 2",
		"1 (x) R 1 1 1 0 -1 0 0 0 0 0 11 22 0 0 20 0 1 0 53778 3133440", // ends before rss
		"1 (x) R 1 1 1 0 -1 0 0 0 0 0 11 -22 0 0 20 0 1 0 53778 3133440 381",
	} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q): no error", bad)
		}
	}
}

func TestParseNetstat(t *testing.T) {
	const tcp = "TcpExt: SyncookiesSent SyncookiesRecv\nTcpExt: 0 7\n"
	for _, tc := range []struct {
		name, text string
		in, out    float64
		err        bool
	}{
		{name: "real", text: tcp + "IpExt: InNoRoutes InTruncatedPkts InMcastPkts OutMcastPkts InBcastPkts OutBcastPkts InOctets OutOctets InMcastOctets OutMcastOctets InBcastOctets OutBcastOctets InCsumErrors InNoECTPkts InECT1Pkts InECT0Pkts InCEPkts ReasmOverlaps\nIpExt: 0 0 0 0 0 0 199078406 8000183 0 0 0 0 0 34023 0 0 0 0\nMPTcpExt: MPCapableSYNRX\nMPTcpExt: 0\n",
			in: 199078406, out: 8000183},
		{name: "past 2^53", text: "IpExt: OutOctets InOctets\nIpExt: 18446744073709551615 9007199254740993\n",
			in: 9007199254740993, out: 18446744073709551615},
		{name: "no IpExt", text: tcp},
		{name: "no OutOctets", text: "IpExt: InOctets\nIpExt: 5\n", in: 5},
		{name: "fewer values", text: "IpExt: InOctets OutOctets\nIpExt: 5\n", err: true},
		{name: "no values", text: "IpExt: InOctets OutOctets\n", err: true},
		{name: "not a number", text: "IpExt: InOctets\nIpExt: x\n", err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, out, err := parseNetstat([]byte(tc.text))
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if err == nil && (in != tc.in || out != tc.out) {
				t.Errorf("in, out = %v, %v, want %v, %v", in, out, tc.in, tc.out)
			}
		})
	}
}

// BenchmarkGather is a scrape of the process metrics alone, by this
// collector and by client_golang's.
func BenchmarkGather(b *testing.B) {
	ours, err := newCollector()
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		c    prometheus.Collector
	}{
		{"impl=procmetrics", ours},
		{"impl=client_golang", collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})},
	} {
		b.Run(bc.name, func(b *testing.B) {
			reg := prometheus.NewRegistry()
			reg.MustRegister(bc.c)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := reg.Gather(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
