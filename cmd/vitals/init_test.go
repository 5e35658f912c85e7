package main

import (
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// maxModuleInitBytes bounds what this module's packages allocate before
// main runs, all together. Whatever they allocate there every agent
// keeps, whichever plugins its config enables: a plugin's tables and
// regular expressions are built when it is used, not at start.
const maxModuleInitBytes = 384 << 10

// The runtime's line for one package's init (GODEBUG=inittrace=1):
// init github.com/x/y @1.2 ms, 0.1 ms clock, 1234 bytes, 5 allocs
var initLine = regexp.MustCompile(`^init (\S+) @.* clock, (\d+) bytes, (\d+) allocs$`)

func TestModuleInitAllocatesLittle(t *testing.T) {
	cmd := exec.Command(binary, "--help")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	out, _ := cmd.CombinedOutput() // --help's exit status is not the point
	var total, allocs int
	var lines []string
	for _, line := range strings.Split(string(out), "\n") {
		m := initLine.FindStringSubmatch(line)
		if m == nil || !strings.HasPrefix(m[1], "github.com/vitals-dev/vitals/") {
			continue
		}
		b, _ := strconv.Atoi(m[2])
		a, _ := strconv.Atoi(m[3])
		total += b
		allocs += a
		lines = append(lines, line)
	}
	if len(lines) == 0 {
		t.Fatalf("no init trace of this module's packages in the output:\n%s", out)
	}
	t.Logf("this module's packages allocate %d bytes in %d allocations at init", total, allocs)
	if total > maxModuleInitBytes {
		t.Errorf("this module's packages allocate %d bytes at init, want at most %d:\n%s", total, maxModuleInitBytes, strings.Join(lines, "\n"))
	}
}
