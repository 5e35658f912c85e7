package check

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/procfs"

	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/ollama"
)

// ServerSeries are the series of a server's own /metrics that the resource
// probe keeps, by kind. Values of one name are summed over their labels.
var ServerSeries = map[probes.Kind][]string{
	probes.KindLlamaCpp: {"llamacpp:requests_processing", "llamacpp:requests_deferred", "llamacpp:kv_cache_usage_ratio"},
	probes.KindVLLM:     {"vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:gpu_cache_usage_perc"},
	probes.KindTGI:      {"tgi_queue_size", "tgi_batch_current_size"},
	probes.KindTEI:      {"te_queue_size", "te_batch_next_size"},
}

// ProcFS reads process statistics; nil means the default /proc.
type ProcFS = *procfs.FS

// ResourcesProbe returns the resource probe of kind k. It reads the target's
// process (when it has a PID) from fs (nil: /proc), Ollama's loaded models
// and the server's named /metrics series. It fails only when every source
// it tried failed.
func ResourcesProbe(k probes.Kind, fs ProcFS) probes.Probe {
	return probes.ProbeFunc(func(ctx context.Context, c *http.Client, t probes.Target, _ probes.Config) (probes.Result, error) {
		var res probes.Result
		var errs []error
		tried := 0
		if t.PID > 0 {
			tried++
			ps, err := ReadProcess(fs, t.PID)
			if err != nil {
				errs = append(errs, err)
			} else {
				res.Process = &ps
			}
		}
		if k == probes.KindOllama {
			tried++
			models, err := ollama.New(c, t.BaseURL).PS(ctx)
			if err != nil {
				errs = append(errs, err)
			} else {
				res.ModelMemory = map[string]probes.ModelMemory{}
				for _, m := range models {
					res.ModelMemory[m.Name] = probes.ModelMemory{TotalBytes: m.Size, VRAMBytes: m.SizeVRAM}
				}
			}
		}
		if names := ServerSeries[k]; len(names) > 0 {
			tried++
			b, err := probes.Fetch(ctx, c, http.MethodGet, probes.JoinURL(t.BaseURL, "/metrics"), nil)
			if err != nil {
				errs = append(errs, err)
			} else {
				res.ServerMetrics = PickSeries(b, names)
			}
		}
		if tried > 0 && len(errs) == tried {
			return res, errors.Join(errs...)
		}
		return res, nil
	})
}

// ReadProcess reads CPU time and resident memory of pid from fs (nil:
// /proc).
func ReadProcess(fs ProcFS, pid int) (probes.ProcessStats, error) {
	f, err := procFS(fs)
	if err != nil {
		return probes.ProcessStats{}, err
	}
	p, err := f.Proc(pid)
	if err != nil {
		return probes.ProcessStats{}, fmt.Errorf("process %d: %w", pid, err)
	}
	st, err := p.Stat()
	if err != nil {
		return probes.ProcessStats{}, fmt.Errorf("process %d: %w", pid, err)
	}
	// procfs's StartTime parses all of /proc/stat for the boot time on
	// every call; the boot time does not change, so it is read once.
	var start float64
	if boot, err := bootTime(f); err == nil {
		start = boot + float64(st.Starttime)/userHZ
	}
	return probes.ProcessStats{PID: pid, CPUSeconds: st.CPUTime(), ResidentBytes: int64(st.ResidentMemory()), StartTimeSeconds: start}, nil
}

// userHZ is the kernel's clock tick rate for /proc/<pid>/stat times (the
// USER_HZ that procfs assumes too).
const userHZ = 100

var (
	bootOnce sync.Once
	bootSecs float64
	bootErr  error
)

// bootTime returns the host's boot time in Unix seconds, read once.
func bootTime(f procfs.FS) (float64, error) {
	bootOnce.Do(func() {
		st, err := f.Stat()
		if err != nil {
			bootErr = fmt.Errorf("procfs: %w", err)
			return
		}
		bootSecs = float64(st.BootTime)
	})
	return bootSecs, bootErr
}

func procFS(fs ProcFS) (procfs.FS, error) {
	if fs != nil {
		return *fs, nil
	}
	f, err := procfs.NewDefaultFS()
	if err != nil {
		return f, fmt.Errorf("procfs: %w", err)
	}
	return f, nil
}

// PickSeries reads Prometheus text exposition b and returns the sum of the
// samples of each name in names that it holds. It ignores what it cannot
// parse.
func PickSeries(b []byte, names []string) map[string]float64 {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		end := strings.IndexAny(line, "{ \t")
		if end <= 0 || !want[line[:end]] {
			continue
		}
		name, rest := line[:end], line[end:]
		if strings.HasPrefix(rest, "{") {
			i := strings.LastIndexByte(rest, '}')
			if i < 0 {
				continue
			}
			rest = rest[i+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		out[name] += v
	}
	return out
}

// ErrNoListener is returned by FindListener when no process of this host
// listens on the port.
var ErrNoListener = errors.New("no process listens on the port")

// FindListener returns the PID of the process that listens on TCP port
// (IPv4 or IPv6) on this host, from fs (nil: /proc). It needs to read the
// other processes' file descriptors, so as an unprivileged user it finds
// only the user's own processes.
func FindListener(fs ProcFS, port int) (int, error) {
	f, err := procFS(fs)
	if err != nil {
		return 0, err
	}
	const listen = 0x0A
	inodes := map[string]bool{}
	for _, read := range []func() (procfs.NetTCP, error){f.NetTCP, f.NetTCP6} {
		lines, err := read()
		if err != nil {
			continue // no IPv6, say
		}
		for _, l := range lines {
			if l.St == listen && l.LocalPort == uint64(port) {
				inodes["socket:["+strconv.FormatUint(l.Inode, 10)+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("port %d: %w", port, ErrNoListener)
	}
	procs, err := f.AllProcs()
	if err != nil {
		return 0, fmt.Errorf("procfs: %w", err)
	}
	for _, p := range procs {
		targets, err := p.FileDescriptorTargets()
		if err != nil {
			continue // gone, or not ours
		}
		for _, t := range targets {
			if inodes[t] {
				return p.PID, nil
			}
		}
	}
	return 0, fmt.Errorf("port %d: %w", port, ErrNoListener)
}
