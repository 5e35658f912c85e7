//go:build !linux

package probes

// readStat reads /proc/<pid>/stat through procfs where there is one.
func readStat(pid int) (procStat, error) {
	fs, err := procFS(nil)
	if err != nil {
		return procStat{}, err
	}
	return stat(&fs, pid)
}
