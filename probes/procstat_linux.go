package probes

import (
	"fmt"
	"strconv"
	"syscall"
	"unsafe"
)

// readStat reads /proc/<pid>/stat without allocating: its path and its
// line in buffers on the stack, opened, read and closed with the system
// calls themselves (os.Open would allocate a File and register it with the
// poller; procfs also stats the directory and grows its read from 512
// bytes). The resource probe runs it every check.
func readStat(pid int) (procStat, error) {
	if pid <= 0 {
		return procStat{}, fmt.Errorf("process %d: not a PID", pid)
	}
	var path [32]byte
	p := strconv.AppendInt(append(path[:0], "/proc/"...), int64(pid), 10)
	p = append(p, "/stat\x00"...)
	fd, _, e := syscall.Syscall6(syscall.SYS_OPENAT, atFDCWD, uintptr(unsafe.Pointer(&path[0])), syscall.O_RDONLY|syscall.O_CLOEXEC, 0, 0, 0)
	if e != 0 {
		return procStat{}, fmt.Errorf("process %d: open /proc/%d/stat: %w", pid, pid, e)
	}
	var buf [maxStatLine]byte
	n := 0
	for n < len(buf) {
		r, _, e := syscall.Syscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[n])), uintptr(len(buf)-n))
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			syscall.Close(int(fd))
			return procStat{}, fmt.Errorf("process %d: read /proc/%d/stat: %w", pid, pid, e)
		}
		if r == 0 {
			break
		}
		n += int(r)
	}
	syscall.Close(int(fd))
	if n == len(buf) {
		return procStat{}, fmt.Errorf("process %d: /proc/%d/stat: %w: longer than %d bytes", pid, pid, errStatLine, len(buf))
	}
	st, err := parseStat(buf[:n])
	if err != nil {
		return procStat{}, fmt.Errorf("process %d: /proc/%d/stat: %w", pid, pid, err)
	}
	return st, nil
}

// atFDCWD is AT_FDCWD (-100) as the system call takes it: a relative
// path is the working directory's (the path here is absolute).
const atFDCWD = ^uintptr(100 - 1)
