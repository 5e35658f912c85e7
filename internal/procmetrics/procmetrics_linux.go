//go:build linux

package procmetrics

import (
	"bytes"
	"errors"
	"os"
	"runtime"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"
)

// userHZ is the clock tick of /proc/<pid>/stat's times: USER_HZ, 100 on
// every Linux ABI (client_golang's procfs assumes it too).
const userHZ = 100

const (
	statPath    = "/proc/self/stat"
	netstatPath = "/proc/self/net/netstat"
	fdPath      = "/proc/self/fd"
)

// collector is the Linux process collector. Its descs are client_golang's
// names and help texts.
type collector struct {
	cpu, openFDs, maxFDs, vsize, maxVsize, rss, start, netIn, netOut *prometheus.Desc

	startTime float64 // Unix seconds; a process's start does not move
	pageSize  float64

	// stat and netstat are /proc/self/stat and /proc/self/net/netstat,
	// kept open and read again from their start at each scrape (netstat
	// -1 where it cannot be opened). Opened anew, netstat's text overflows
	// the kernel's first buffer of a page and is made twice, and making
	// it is most of the collector's cost: the kernel sums each of its
	// counters over the CPUs.
	stat, netstat int

	mu  sync.Mutex // guards buf: the registry may gather concurrently
	buf []byte     // the last file read, reused
}

// NewCollector returns the collector of the process's own metrics. Where
// /proc/self cannot be read it is client_golang's, which then reports
// what it can.
func NewCollector() prometheus.Collector {
	c, err := newCollector()
	if err != nil {
		return collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})
	}
	return c
}

func newCollector() (*collector, error) {
	c := &collector{
		cpu:      prometheus.NewDesc("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", nil, nil),
		openFDs:  prometheus.NewDesc("process_open_fds", "Number of open file descriptors.", nil, nil),
		maxFDs:   prometheus.NewDesc("process_max_fds", "Maximum number of open file descriptors.", nil, nil),
		vsize:    prometheus.NewDesc("process_virtual_memory_bytes", "Virtual memory size in bytes.", nil, nil),
		maxVsize: prometheus.NewDesc("process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes.", nil, nil),
		rss:      prometheus.NewDesc("process_resident_memory_bytes", "Resident memory size in bytes.", nil, nil),
		start:    prometheus.NewDesc("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", nil, nil),
		netIn:    prometheus.NewDesc("process_network_receive_bytes_total", "Number of bytes received by the process over the network.", nil, nil),
		netOut:   prometheus.NewDesc("process_network_transmit_bytes_total", "Number of bytes sent by the process over the network.", nil, nil),
		pageSize: float64(os.Getpagesize()),
		buf:      make([]byte, 8<<10), // netstat's text is 3 to 5 KiB
	}
	var err error
	if c.stat, err = open(statPath); err != nil {
		return nil, err
	}
	if c.netstat, err = open(netstatPath); err != nil {
		c.netstat = -1 // no network metrics, as with client_golang
	}
	runtime.AddCleanup(c, func(fds [2]int) {
		for _, fd := range fds {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
	}, [2]int{c.stat, c.netstat})
	b, err := c.read(c.stat)
	if err != nil {
		return nil, err
	}
	st, err := parseStat(b)
	if err != nil {
		return nil, err
	}
	boot, err := bootTime()
	if err != nil {
		return nil, err
	}
	c.startTime = boot + float64(st.startTicks)/userHZ
	return c, nil
}

func open(path string) (int, error) {
	for {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// Describe sends the descs of every metric Collect may send.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.cpu, c.openFDs, c.maxFDs, c.vsize, c.maxVsize, c.rss, c.start, c.netIn, c.netOut} {
		ch <- d
	}
}

// Collect sends what can be read now. As client_golang's collector does
// by default, it leaves out a metric it cannot read rather than failing
// the scrape: these metrics are a mix-in to the agent's own.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.start, prometheus.GaugeValue, c.startTime)
	c.mu.Lock()
	if b, err := c.read(c.stat); err == nil {
		if st, err := parseStat(b); err == nil {
			ch <- prometheus.MustNewConstMetric(c.cpu, prometheus.CounterValue, float64(st.cpuTicks)/userHZ)
			ch <- prometheus.MustNewConstMetric(c.vsize, prometheus.GaugeValue, float64(st.vsize))
			ch <- prometheus.MustNewConstMetric(c.rss, prometheus.GaugeValue, float64(st.rssPages)*c.pageSize)
		}
	}
	if c.netstat >= 0 {
		if b, err := c.read(c.netstat); err == nil {
			if in, out, err := parseNetstat(b); err == nil {
				ch <- prometheus.MustNewConstMetric(c.netIn, prometheus.CounterValue, in)
				ch <- prometheus.MustNewConstMetric(c.netOut, prometheus.CounterValue, out)
			}
		}
	}
	c.mu.Unlock()
	if n, err := openFDs(); err == nil {
		ch <- prometheus.MustNewConstMetric(c.openFDs, prometheus.GaugeValue, float64(n))
	}
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil {
		ch <- prometheus.MustNewConstMetric(c.maxFDs, prometheus.GaugeValue, float64(lim.Cur))
	}
	if unix.Getrlimit(unix.RLIMIT_AS, &lim) == nil {
		ch <- prometheus.MustNewConstMetric(c.maxVsize, prometheus.GaugeValue, float64(lim.Cur))
	}
}

// read reads the open file fd from its start into c.buf, growing it when
// the file does not fit, and returns the bytes read. A read of a /proc
// file at offset 0 makes its text anew. The caller holds c.mu.
func (c *collector) read(fd int) ([]byte, error) {
	n := 0
	for {
		if n == len(c.buf) {
			c.buf = append(c.buf, make([]byte, len(c.buf))...)
		}
		m, err := unix.Pread(fd, c.buf[n:], int64(n))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if m == 0 {
			return c.buf[:n], nil
		}
		n += m
	}
}

// stat is what the collector takes of /proc/<pid>/stat.
type stat struct {
	cpuTicks   uint64 // utime + stime
	startTicks uint64 // since boot
	vsize      uint64 // bytes
	rssPages   int64
}

var errFormat = errors.New("procmetrics: unexpected format")

// parseStat parses a /proc/<pid>/stat line (proc(5)). The command name,
// the second field, is in parentheses and may hold spaces and
// parentheses itself, so the fields are counted from the last ')'.
func parseStat(b []byte) (stat, error) {
	var s stat
	r := bytes.LastIndexByte(b, ')')
	if r < 0 {
		return s, errFormat
	}
	rest := b[r+1:]
	var utime, stime uint64
	var err error
	n := 2 // the field just read, numbered as proc(5) numbers them
	for n < 24 {
		rest = bytes.TrimLeft(rest, " ")
		if len(rest) == 0 {
			return s, errFormat
		}
		f := rest
		if i := bytes.IndexAny(rest, " \n"); i >= 0 {
			f, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		n++
		switch n {
		case 14:
			utime, err = strconv.ParseUint(string(f), 10, 64)
		case 15:
			stime, err = strconv.ParseUint(string(f), 10, 64)
		case 22:
			s.startTicks, err = strconv.ParseUint(string(f), 10, 64)
		case 23:
			s.vsize, err = strconv.ParseUint(string(f), 10, 64)
		case 24:
			s.rssPages, err = strconv.ParseInt(string(f), 10, 64)
		}
		if err != nil {
			return s, errFormat
		}
	}
	s.cpuTicks = utime + stime
	return s, nil
}

// parseNetstat returns IpExt's InOctets and OutOctets of a
// /proc/<pid>/net/netstat text: for each protocol a line of counter names
// and then one of their values, each opening with "Protocol:". The
// counters are the process's network namespace's, as client_golang's are;
// one that is missing reads 0, as there.
func parseNetstat(b []byte) (in, out float64, err error) {
	for len(b) > 0 {
		var names, values []byte
		names, b, _ = bytes.Cut(b, []byte("\n"))
		values, b, _ = bytes.Cut(b, []byte("\n"))
		names, ok := bytes.CutPrefix(names, []byte("IpExt:"))
		if !ok {
			continue
		}
		if values, ok = bytes.CutPrefix(values, []byte("IpExt:")); !ok {
			return 0, 0, errFormat
		}
		for {
			var name, value []byte
			name, names = field(names)
			value, values = field(values)
			if name == nil || value == nil {
				if name != nil || value != nil {
					return 0, 0, errFormat // as many names as values
				}
				return in, out, nil
			}
			var v *float64
			switch string(name) {
			case "InOctets":
				v = &in
			case "OutOctets":
				v = &out
			default:
				continue
			}
			u, err := strconv.ParseUint(string(value), 10, 64)
			if err != nil {
				return 0, 0, errFormat
			}
			*v = float64(u)
		}
	}
	return 0, 0, nil
}

// field returns the first space-separated field of b and the rest; nil
// when b has none.
func field(b []byte) (f, rest []byte) {
	b = bytes.TrimLeft(b, " ")
	if len(b) == 0 {
		return nil, nil
	}
	if i := bytes.IndexByte(b, ' '); i >= 0 {
		return b[:i], b[i+1:]
	}
	return b, nil
}

// openFDs counts the process's open file descriptors. Since Linux 6.2 the
// size of /proc/<pid>/fd is that count; before, it is 0 and the entries
// are counted (the directory's own descriptor among them, as in
// client_golang's count).
func openFDs() (int, error) {
	var st unix.Stat_t
	if err := unix.Stat(fdPath, &st); err != nil {
		return 0, err
	}
	if st.Size > 0 {
		return int(st.Size), nil
	}
	return countFDs()
}

func countFDs() (int, error) {
	d, err := os.Open(fdPath)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	return len(names), err
}

// bootTime returns the host's boot time in Unix seconds: btime of
// /proc/stat, read once, by procfs.
func bootTime() (float64, error) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return 0, err
	}
	st, err := fs.Stat()
	if err != nil {
		return 0, err
	}
	return float64(st.BootTime), nil
}
