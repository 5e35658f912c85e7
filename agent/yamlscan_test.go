package agent

import (
	"bytes"
	"testing"
)

// FuzzScanYAML: the pre-parse scan takes any bytes without panicking, and
// a position it reports is inside the input.
func FuzzScanYAML(f *testing.F) {
	for _, seed := range []string{
		"core:\n  log: {level: info}\n",
		"a: \"x\\\n[\"\nb: 'it''s'\n",
		"- - - [ {a: b}, c ]\n",
		"k: |\n  [[[\n\n  ]\nz: >-\n",
		"--- !tag &a\n...\n# c [\n",
		"\"unterminated",
		"a:\r\n  b: [\r\n 1,\r\n]\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		line, col, problem := scanYAML(data, 8, 64)
		if problem == "" {
			if line != 0 || col != 0 {
				t.Fatalf("no problem at %d:%d", line, col)
			}
			return
		}
		if lines := bytes.Count(data, []byte("\n")) + 1; line < 1 || line > lines || col < 1 {
			t.Fatalf("problem %q at %d:%d of %d lines", problem, line, col, lines)
		}
	})
}
