package exepages

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestReadOnlyMapping(t *testing.T) {
	const exe = "/usr/bin/vitals"
	for _, tc := range []struct {
		line  string
		start uintptr
		end   uintptr
		ok    bool
	}{
		{"00400000-01f0e000 r-xp 00000000 fe:00 10010858                           /usr/bin/vitals", 0x400000, 0x1f0e000, true},
		{"01f0e000-03b22000 r--p 01b0e000 fe:00 10010858                           /usr/bin/vitals", 0x1f0e000, 0x3b22000, true},
		{"03b22000-03bf5000 rw-p 03722000 fe:00 10010858                           /usr/bin/vitals", 0, 0, false}, // data
		{"03bf5000-05c51000 rw-p 00000000 00:00 0 ", 0, 0, false},                                                 // bss
		{"00400000-01f0e000 r-xp 00000000 fe:00 10010858                           /usr/bin/vitals-old", 0, 0, false},
		{"00400000-01f0e000 r-xs 00000000 fe:00 10010858                           /usr/bin/vitals", 0, 0, false}, // shared
		{"7ffd1c5f0000-7ffd1c5f2000 r-xp 00000000 00:00 0                          [vdso]", 0, 0, false},
		{"garbage", 0, 0, false},
		{"zz-01f0e000 r-xp 00000000 fe:00 10010858 /usr/bin/vitals", 0, 0, false},
		{"01f0e000-00400000 r-xp 00000000 fe:00 10010858 /usr/bin/vitals", 0, 0, false},
	} {
		start, end, ok := readOnlyMapping([]byte(tc.line), exe)
		if start != tc.start || end != tc.end || ok != tc.ok {
			t.Errorf("%q: got %#x-%#x %v, want %#x-%#x %v", tc.line, start, end, ok, tc.start, tc.end, tc.ok)
		}
	}
}

// TestReleaseLowersFileRSS releases the test binary's own pages: its
// file-backed RSS falls, and the code released runs again afterwards.
func TestReleaseLowersFileRSS(t *testing.T) {
	before := rssFileKiB(t)
	n, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	after := rssFileKiB(t)
	t.Logf("released %d KiB of mappings; RssFile %d -> %d KiB", n>>10, before, after)
	if n <= 0 {
		t.Fatalf("released %d bytes, want the executable's text and read-only data", n)
	}
	if after >= before {
		t.Errorf("RssFile %d KiB after release, want below %d", after, before)
	}
	if _, err := Release(); err != nil { // runs code that was just released
		t.Fatal(err)
	}
}

func rssFileKiB(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "RssFile:"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}
