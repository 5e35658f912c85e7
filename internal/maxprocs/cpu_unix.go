//go:build unix

package maxprocs

import (
	"syscall"
	"time"
)

// processCPU is the process's user and system CPU time so far.
var processCPU = func() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
