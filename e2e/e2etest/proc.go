package e2etest

import "github.com/prometheus/procfs"

// ProcCPU returns a process's user and system CPU seconds.
func ProcCPU(pid int) (float64, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, err
	}
	st, err := p.Stat()
	if err != nil {
		return 0, err
	}
	return st.CPUTime(), nil
}

// ProcStatus reads a process's /proc/<pid>/status (VmRSS, RssAnon, VmHWM
// and the others, in bytes).
func ProcStatus(pid int) (procfs.ProcStatus, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return procfs.ProcStatus{}, err
	}
	return p.NewStatus()
}
