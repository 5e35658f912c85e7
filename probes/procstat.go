package probes

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// procStat is what the agent reads of /proc/<pid>/stat: CPU time and
// start time in clock ticks, resident memory in pages.
type procStat struct {
	utime, stime, starttime uint64
	rss                     int64
}

// maxStatLine bounds a /proc/<pid>/stat line: 52 fields of at most 20
// digits and a command name of at most 64 bytes take under 1.2 KiB.
const maxStatLine = 2048

// The fields read, counted from the state (the third field, the first
// after the command name in parentheses), as proc(5) numbers them less 3.
const (
	statUtime     = 14 - 3
	statStime     = 15 - 3
	statStarttime = 22 - 3
	statRSS       = 24 - 3
)

var errStatLine = errors.New("malformed stat line")

// parseStat reads line, a /proc/<pid>/stat. The command name may hold
// spaces and parentheses, so the fields start after its last ')'.
func parseStat(line []byte) (procStat, error) {
	i := bytes.LastIndexByte(line, ')')
	if i < 0 || i+2 > len(line) || line[i+1] != ' ' {
		return procStat{}, errStatLine
	}
	var st procStat
	rest := line[i+2:]
	for n := 0; n <= statRSS; n++ {
		f := rest
		if j := bytes.IndexByte(rest, ' '); j >= 0 {
			f, rest = rest[:j], rest[j+1:]
		} else if n < statRSS {
			return procStat{}, fmt.Errorf("%w: %d fields after the command name, want %d", errStatLine, n+1, statRSS+1)
		} else {
			f = bytes.TrimSuffix(f, []byte{'\n'})
		}
		var err error
		switch n {
		case statUtime:
			st.utime, err = parseUint(f)
		case statStime:
			st.stime, err = parseUint(f)
		case statStarttime:
			st.starttime, err = parseUint(f)
		case statRSS:
			st.rss, err = strconv.ParseInt(string(f), 10, 64) // no allocation: the conversion does not escape
		}
		if err != nil {
			return procStat{}, fmt.Errorf("%w: field %d: %w", errStatLine, n+3, err)
		}
	}
	return st, nil
}

func parseUint(f []byte) (uint64, error) { return strconv.ParseUint(string(f), 10, 64) }
