package probes

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/procfs"
)

// ProcFS reads process statistics; nil means the default /proc.
type ProcFS = *procfs.FS

// ReadProcess reads CPU time and resident memory of pid from fs (nil:
// /proc).
func ReadProcess(fs ProcFS, pid int) (ProcessStats, error) {
	st, err := stat(fs, pid)
	if err != nil {
		return ProcessStats{}, err
	}
	// procfs's StartTime parses all of /proc/stat for the boot time on
	// every call; the boot time does not change, so it is read once.
	var start float64
	if boot, err := bootTime(fs); err == nil {
		start = boot + float64(st.starttime)/userHZ
	}
	return ProcessStats{PID: pid, CPUSeconds: float64(st.utime+st.stime) / userHZ, ResidentBytes: st.rss * pageSize, StartTimeSeconds: start}, nil
}

// stat reads pid's stat line: from /proc without allocating, or from fs
// through procfs.
func stat(fs ProcFS, pid int) (procStat, error) {
	if fs == nil {
		return readStat(pid)
	}
	p, err := fs.Proc(pid)
	if err != nil {
		return procStat{}, fmt.Errorf("process %d: %w", pid, err)
	}
	st, err := p.Stat()
	if err != nil {
		return procStat{}, fmt.Errorf("process %d: %w", pid, err)
	}
	return procStat{utime: uint64(st.UTime), stime: uint64(st.STime), starttime: st.Starttime, rss: int64(st.RSS)}, nil
}

// pageSize converts the stat line's resident pages to bytes.
var pageSize = int64(os.Getpagesize())

// userHZ is the kernel's clock tick rate for /proc/<pid>/stat times (the
// USER_HZ that procfs assumes too).
const userHZ = 100

var (
	bootOnce sync.Once
	bootSecs float64
	bootErr  error
)

// bootTime returns the host's boot time in Unix seconds, read once.
func bootTime(fs ProcFS) (float64, error) {
	bootOnce.Do(func() {
		f, err := procFS(fs)
		if err != nil {
			bootErr = err
			return
		}
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

// ErrNoListener is returned by FindListener when no process of this host
// listens on the port.
var ErrNoListener = errors.New("no process listens on the port")

// FindListener returns the PID of the process that listens on TCP port
// (IPv4 or IPv6) on this host, from fs (nil: /proc). It needs to read the
// other processes' file descriptors, so as an unprivileged user it finds
// only the user's own processes.
func FindListener(fs ProcFS, port int) (int, error) {
	inodes, err := ListenerInodes(fs, port)
	if err != nil {
		return 0, err
	}
	return FindSocketOwner(fs, port, inodes)
}

// ListenerInodes returns the inodes of the sockets listening on TCP port
// (IPv4 and IPv6); ErrNoListener when there are none. It reads every
// listener as Listeners does.
func ListenerInodes(fs ProcFS, port int) ([]uint64, error) {
	all, err := Listeners(fs)
	if err != nil {
		return nil, err
	}
	return PortListeners(all, port)
}

// PortListeners is port's entry of Listeners' map; ErrNoListener when it
// has none.
func PortListeners(all map[int][]uint64, port int) ([]uint64, error) {
	inodes := all[port]
	if len(inodes) == 0 {
		return nil, fmt.Errorf("port %d: %w", port, ErrNoListener)
	}
	return inodes, nil
}

// Listeners returns the inodes of the host's listening TCP sockets (IPv4
// and IPv6) by port, each port's sorted. With fs nil it asks the kernel
// for the listening sockets over netlink (sock_diag, as ss(8) does),
// cheap enough to ask every second whether a listener is still the one
// found before; where that is refused, and with an fs, it reads fs's
// net/tcp and tcp6, which list every connection of the host as text
// (thousands of lines on a busy one, milliseconds of CPU to read).
func Listeners(fs ProcFS) (map[int][]uint64, error) {
	var all map[int][]uint64
	var err error
	if fs == nil {
		all, err = netlinkListeners()
	}
	if fs != nil || err != nil {
		all, err = procListeners(fs)
	}
	if err != nil {
		return nil, err
	}
	for _, inodes := range all {
		slices.Sort(inodes)
	}
	return all, nil
}

// procListeners is Listeners from fs's net/tcp and tcp6.
func procListeners(fs ProcFS) (map[int][]uint64, error) {
	f, err := procFS(fs)
	if err != nil {
		return nil, err
	}
	const listen = 0x0A
	all := map[int][]uint64{}
	for _, read := range []func() (procfs.NetTCP, error){f.NetTCP, f.NetTCP6} {
		lines, err := read()
		if err != nil {
			continue // no IPv6, say
		}
		for _, l := range lines {
			if l.St == listen {
				all[int(l.LocalPort)] = append(all[int(l.LocalPort)], l.Inode)
			}
		}
	}
	return all, nil
}

// FindSocketOwner returns the PID of the process that holds one of the
// socket inodes (of a listener on port), reading every process's file
// descriptors.
func FindSocketOwner(fs ProcFS, port int, inodes []uint64) (int, error) {
	f, err := procFS(fs)
	if err != nil {
		return 0, err
	}
	want := map[string]bool{}
	for _, i := range inodes {
		want["socket:["+strconv.FormatUint(i, 10)+"]"] = true
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
			if want[t] {
				return p.PID, nil
			}
		}
	}
	return 0, fmt.Errorf("port %d: %w", port, ErrNoListener)
}

// ProcessStart returns when pid started, in clock ticks since boot (the
// starttime of /proc/<pid>/stat), from fs (nil: /proc). A PID and its
// start time name one process: a PID the kernel gave again to another
// process has another start time.
func ProcessStart(fs ProcFS, pid int) (uint64, error) {
	st, err := stat(fs, pid)
	return st.starttime, err
}

// ModelProcess is a child process of a server that runs one model's
// inference (Ollama's `ollama runner --model <models>/blobs/sha256-<hex>`),
// and the loaded model it runs.
type ModelProcess struct {
	// Model is the loaded model's name; "" when the runner could not be
	// attributed: it was started without --model (Ollama's newer engine
	// receives the model in its load request), or its blob's digest is
	// none of the loaded models'.
	Model string
	// Digest is the sha256 digest of the runner's --model blob
	// ("sha256:<hex>"); "" without --model.
	Digest string
	ProcessStats
}

// maxRunners bounds the runners read of one server.
const maxRunners = 64

// FindModelProcesses reads the runner children of the server process ppid
// from fs (nil: /proc): the children whose second argument is "runner".
// Each is attributed to the loaded model whose digest is its --model
// blob's. It reads every process's stat to find the children, at most
// maxRunners of them.
func FindModelProcesses(fs ProcFS, ppid int, loaded []LoadedModel) ([]ModelProcess, error) {
	f, err := procFS(fs)
	if err != nil {
		return nil, err
	}
	procs, err := f.AllProcs()
	if err != nil {
		return nil, fmt.Errorf("procfs: %w", err)
	}
	var out []ModelProcess
	for _, p := range procs {
		if len(out) == maxRunners {
			break
		}
		st, err := p.Stat()
		if err != nil || st.PPID != ppid {
			continue // gone, or not a child
		}
		argv, err := p.CmdLine()
		if err != nil || len(argv) < 2 || argv[1] != "runner" {
			continue
		}
		ps, err := ReadProcess(&f, p.PID)
		if err != nil {
			continue // ended since
		}
		mp := ModelProcess{Digest: runnerDigest(argv[2:]), ProcessStats: ps}
		for _, lm := range loaded {
			if mp.Digest != "" && sameDigest(lm.BlobDigest, mp.Digest) {
				mp.Model = lm.Name
				break
			}
		}
		out = append(out, mp)
	}
	slices.SortFunc(out, func(a, b ModelProcess) int { return a.PID - b.PID })
	return out, nil
}

// runnerDigest is the digest of a runner's --model blob
// (<models>/blobs/sha256-<hex>), as "sha256:<hex>"; "" without one.
func runnerDigest(args []string) string {
	var path string
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--model="); ok {
			path = v
		} else if a == "--model" && i+1 < len(args) {
			path = args[i+1]
		}
	}
	hex, ok := strings.CutPrefix(filepath.Base(path), "sha256-")
	if !ok || len(hex) != 64 {
		return ""
	}
	return "sha256:" + strings.ToLower(hex)
}

// sameDigest reports whether a digest as a server lists it (with or
// without the "sha256:" prefix) is d.
func sameDigest(listed, d string) bool {
	if listed == "" {
		return false
	}
	if !strings.Contains(listed, ":") {
		listed = "sha256:" + listed
	}
	return strings.EqualFold(listed, d)
}
