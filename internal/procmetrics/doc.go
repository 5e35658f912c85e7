// Package procmetrics exports the agent's own process metrics under the
// names and meanings of client_golang's process collector
// (process_cpu_seconds_total, process_open_fds, process_max_fds,
// process_virtual_memory_bytes, process_virtual_memory_max_bytes,
// process_resident_memory_bytes, process_start_time_seconds,
// process_network_receive_bytes_total and
// process_network_transmit_bytes_total), so dashboards and alerts written
// for that collector read it unchanged.
//
// It exists because that collector is built for any PID and pays for it at
// every scrape: it parses /proc/stat for the boot time, scans
// /proc/<pid>/stat with fmt, reads /proc/<pid>/limits as text and parses
// every counter of /proc/<pid>/net/netstat, about a tenth of the agent's
// scrape. On Linux this collector reads the process's start time once,
// and per scrape only what changes: /proc/self/stat and
// /proc/self/net/netstat, read again from descriptors it keeps open (two
// of process_open_fds) into one reused buffer, of the latter only IpExt's
// InOctets and OutOctets; the fd count from the size of /proc/self/fd
// (Linux 6.2 and later; its entries counted before that); and the limits
// from getrlimit. What is left is mostly the kernel's: making netstat's
// text, each counter summed over the CPUs, is about 70 µs a scrape.
// Elsewhere it is client_golang's.
package procmetrics
