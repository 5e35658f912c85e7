package check

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
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
// samples of each counter, gauge or untyped family in names that it holds.
// A line the parser refuses is skipped, with the rest of the text read on,
// up to maxBadLines of them.
func PickSeries(b []byte, names []string) map[string]float64 {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]float64{}
	for skips := 0; len(b) > 0; skips++ {
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
		for name, mf := range fams {
			if !want[name] {
				continue
			}
			for _, m := range mf.GetMetric() {
				if v, ok := sampleValue(m); ok {
					out[name] += v
				}
			}
		}
		var pe expfmt.ParseError
		if err == nil || !errors.As(err, &pe) || skips == maxBadLines {
			break
		}
		b = dropLines(b, pe.Line)
	}
	return out
}

// maxBadLines bounds how many refused lines PickSeries skips: each skip
// parses the rest of the text again.
const maxBadLines = 16

// sampleValue is the value of a counter, gauge or untyped sample, if it
// has one (a sample whose value did not parse has none).
func sampleValue(m *dto.Metric) (float64, bool) {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue(), true
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue(), true
	case m.GetUntyped() != nil:
		return m.GetUntyped().GetValue(), true
	}
	return 0, false
}

// dropLines returns b without its first n lines.
func dropLines(b []byte, n int) []byte {
	for ; n > 0 && len(b) > 0; n-- {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return nil
		}
		b = b[i+1:]
	}
	return b
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
