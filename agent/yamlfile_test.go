package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/internal/heaptest"
)

// loadBounded loads path with LoadFile, failing the test if that takes
// more than 5 s (a read that blocks).
func loadBounded(t *testing.T, path string) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := agent.LoadFile(context.Background(), path, testRegistry(), envconfig.MapLookuper(nil))
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("LoadFile(%s) still blocked after 5s", path)
		return nil
	}
}

func TestBadConfigFilesAreRejectedCheaply(t *testing.T) {
	dir := t.TempDir()
	file := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero.yaml")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	valid := "core:\n  log: {level: info}\n"
	for _, tc := range []struct {
		name, path, want string
	}{
		{"named pipe", fifo, "fifo.yaml: not a regular file (a named pipe)"},
		{"symlink to /dev/zero", zero, "zero.yaml: not a regular file (a character device)"},
		{"directory", dir, "not a regular file (a directory)"},
		{"too large", file("big.yaml", valid+"# "+strings.Repeat("x", agent.MaxConfigBytes)+"\n"), "more than the limit of 1048576"},
		{"deep flow nesting", file("deep.yaml", "core: "+strings.Repeat("[", 65<<10)), "deep.yaml:1:70: nested more than 64 levels deep"},
		{"deep mappings", file("deepmap.yaml", "core:\n  x: "+strings.Repeat("{a: ", 100)), "deepmap.yaml:2:"},
		{"compact sequences", file("dashes.yaml", "core:\n  x:\n    "+strings.Repeat("- ", 30000)+"x\n"), "dashes.yaml:3:129: nested more than 64 levels deep"},
		{"deep indentation", file("indent.yaml", deepIndent(200)), "indent.yaml:65:65: nested more than 64 levels deep"},
		{"too many entries", file("flat.yaml", "core: ["+strings.Repeat("1,", 60000)+"1]\n"), "flat.yaml:1:1: more than 20000 keys and list items"},
		{"many keys in one mapping", file("keys.yaml", "core:\n  x:\n"+manyKeys(1001)), "keys.yaml:1003:5: more than 1000 keys in one mapping"},
		{"empty documents", file("docs.yaml", strings.Repeat("---\n", 30000)), "docs.yaml:20001:1: more than 20000 keys and list items"},
		{"second document", file("two.yaml", valid+"---\ncore:\n  log: {level: debug}\n"), "two.yaml:3:1: more than one YAML document"},
		{"byte-order mark", file("bom.yaml", "\xef\xbb\xbf"+valid), "bom.yaml:1:1: file starts with a UTF-8 byte-order mark"},
		{"missing", filepath.Join(dir, "absent.yaml"), "absent.yaml: cannot read: no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			alloc := heaptest.Allocated(func() { err = loadBounded(t, tc.path) })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LoadFile = %v, want an error containing %q", err, tc.want)
			}
			if alloc > 16<<20 {
				t.Errorf("rejecting it allocated %d MiB, want under 16", alloc>>20)
			}
		})
	}
}

func manyKeys(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "    k%d: v\n", i)
	}
	return b.String()
}

func deepIndent(levels int) string {
	var b strings.Builder
	for i := range levels {
		b.WriteString(strings.Repeat(" ", i) + "a:\n")
	}
	return b.String()
}

func TestDepthCheckReadsYAMLNotBrackets(t *testing.T) {
	deep := strings.Repeat("[", 70)
	for name, text := range map[string]string{
		"double quoted": "core:\n  log: {level: \"" + deep + "\"}\n",
		"single quoted": "core:\n  log: {level: '" + deep + "'''}\n",
		"comment":       "# " + deep + "\ncore: # " + deep + "\n  log: {level: info} # " + deep + "\n",
		"block scalar":  "core:\n  api_gateway:\n    plugins:\n      alpha:\n        setting: |\n          " + deep + "\n\n          " + deep + "\n  log: {level: info}\n",
		"plain scalar":  "core:\n  log:\n    level: a" + deep + "\n",
		"leading ---":   "---\ncore:\n  log: {level: info}\n",
		"many entries":  "core:\n  api_gateway:\n    plugins:\n      alpha:\n        setting: x\n" + strings.Repeat("# - - - - - - - - - -\n", 100),
		"long list":     "core:\n  api_gateway:\n    plugins:\n      alpha:\n        setting: x\n  x:\n" + strings.Repeat("    - a: 1\n      b: 2\n", 1500),
		"nested lists":  "core:\n  api_gateway:\n    plugins:\n      alpha:\n        setting: >\n          - - - - [[[[ text\n  log:\n    level: info\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := agent.Parse(context.Background(), "core.yaml", []byte(text), testRegistry(), envconfig.MapLookuper(nil))
			if err != nil && (strings.Contains(err.Error(), "levels deep") || strings.Contains(err.Error(), "document") || strings.Contains(err.Error(), "more than")) {
				t.Errorf("Parse = %v; the brackets are text, not nesting", err)
			}
		})
	}
}
