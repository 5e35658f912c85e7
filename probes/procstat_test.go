package probes

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/procfs"
)

// A stat line as the kernel writes it, with the fields read set apart.
func statLine(comm string) string {
	fields := make([]string, 50)
	for i := range fields {
		fields[i] = "0"
	}
	fields[0] = "S"
	fields[statUtime], fields[statStime], fields[statStarttime], fields[statRSS] = "1234", "567", "890123", "4321"
	return "4242 (" + comm + ") " + strings.Join(fields, " ") + "\n"
}

func TestParseStat(t *testing.T) {
	want := procStat{utime: 1234, stime: 567, starttime: 890123, rss: 4321}
	for _, comm := range []string{"llama-server", "a b", "x) (y", ")", "((", ""} {
		got, err := parseStat([]byte(statLine(comm)))
		if err != nil || got != want {
			t.Errorf("comm %q: %+v, %v; want %+v", comm, got, err, want)
		}
	}
	full := statLine("x")
	cut := full[:strings.Index(full, ") ")+2+len("S 0 0 0 0 0 0 0 0 0 0 1234 567")]
	for name, line := range map[string]string{
		"empty":                "",
		"no command name":      "4242 S 0 0",
		"nothing after it":     "4242 (x)",
		"cut before rss":       cut,
		"a field not a number": strings.Replace(full, " 4321 ", " -x ", 1),
		"a negative cpu time":  strings.Replace(full, " 1234 ", " -1 ", 1),
	} {
		if _, err := parseStat([]byte(line)); !errors.Is(err, errStatLine) {
			t.Errorf("%s: err %v, want errStatLine", name, err)
		}
	}
}

// The agent's own reading agrees with procfs's, for this process and for
// a child, and a process that is gone is an error naming it.
func TestReadProcessMatchesProcfs(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("procfs is Linux's")
	}
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	for _, pid := range []int{os.Getpid(), child.Process.Pid} {
		p, err := procfs.NewProc(pid)
		if err != nil {
			t.Fatal(err)
		}
		before, err := p.Stat()
		if err != nil {
			t.Fatal(err)
		}
		got, err := ReadProcess(nil, pid)
		if err != nil {
			t.Fatal(err)
		}
		after, err := p.Stat()
		if err != nil {
			t.Fatal(err)
		}
		if got.PID != pid || got.CPUSeconds < before.CPUTime() || got.CPUSeconds > after.CPUTime() {
			t.Errorf("pid %d: %+v; procfs CPU %v to %v", pid, got, before.CPUTime(), after.CPUTime())
		}
		lo, hi := min(before.ResidentMemory(), after.ResidentMemory()), max(before.ResidentMemory(), after.ResidentMemory())
		if pid == child.Process.Pid && (got.ResidentBytes < int64(lo) || got.ResidentBytes > int64(hi)) {
			t.Errorf("pid %d: resident %d, procfs %d to %d", pid, got.ResidentBytes, lo, hi)
		}
		start, err := ProcessStart(nil, pid)
		if err != nil || start != before.Starttime {
			t.Errorf("pid %d: start %d, %v; procfs %d", pid, start, err, before.Starttime)
		}
	}
	_ = child.Process.Kill()
	_ = child.Wait()
	if _, err := ReadProcess(nil, child.Process.Pid); err == nil || !strings.Contains(err.Error(), "/proc/") {
		t.Errorf("a process that is gone: err %v, want one naming its stat file", err)
	}
	if _, err := ReadProcess(nil, 0); err == nil {
		t.Error("pid 0: no error")
	}
}

// The resource probe reads a process every check without allocating.
func TestReadProcessAllocatesNothing(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("procfs is Linux's")
	}
	pid := os.Getpid()
	if _, err := ReadProcess(nil, pid); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = ReadProcess(nil, pid) }); n != 0 {
		t.Errorf("%v allocations a read, want 0", n)
	}
}
