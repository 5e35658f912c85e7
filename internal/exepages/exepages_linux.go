package exepages

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// maxMaps bounds how much of /proc/self/maps is read: a Go process maps a
// few dozen regions, and the executable's come first.
const maxMaps = 1 << 20

// Release unmaps the read-only mappings of the running executable and
// returns how many bytes they span. It is safe to call at any time and
// from any goroutine; the pages in use come back on their next access.
func Release() (int64, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("exepages: %w", err)
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("exepages: %w", err)
	}
	defer f.Close()
	var released int64
	sc := bufio.NewScanner(io.LimitReader(f, maxMaps))
	for sc.Scan() {
		start, end, ok := readOnlyMapping(sc.Bytes(), exe)
		if !ok {
			continue
		}
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, start, end-start, unix.MADV_DONTNEED); errno != 0 {
			return released, fmt.Errorf("exepages: madvise %#x-%#x of %s: %w", start, end, exe, errno)
		}
		released += int64(end - start)
	}
	if err := sc.Err(); err != nil {
		return released, fmt.Errorf("exepages: /proc/self/maps: %w", err)
	}
	return released, nil
}

// readOnlyMapping parses one line of /proc/self/maps,
//
//	00400000-01f0e000 r-xp 00000000 fe:00 10010858    /usr/bin/vitals
//
// and reports the range of a mapping of the file path that cannot be
// written.
func readOnlyMapping(line []byte, path string) (start, end uintptr, ok bool) {
	var fields [5][]byte
	rest := line
	for i := range fields {
		rest = bytes.TrimLeft(rest, " ")
		n := bytes.IndexByte(rest, ' ')
		if n < 0 {
			return 0, 0, false
		}
		fields[i], rest = rest[:n], rest[n:]
	}
	if string(bytes.TrimLeft(rest, " ")) != path {
		return 0, 0, false
	}
	perms := fields[1]
	if len(perms) != 4 || perms[0] != 'r' || perms[1] != '-' || perms[3] != 'p' {
		return 0, 0, false
	}
	lo, hi, found := bytes.Cut(fields[0], []byte{'-'})
	if !found {
		return 0, 0, false
	}
	a, err1 := strconv.ParseUint(string(lo), 16, 64)
	b, err2 := strconv.ParseUint(string(hi), 16, 64)
	if err1 != nil || err2 != nil || b <= a {
		return 0, 0, false
	}
	return uintptr(a), uintptr(b), true
}
