package security

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/vitals-dev/vitals/agent"
)

// TestTokenFilesAreBounded checks that a token file is read with the same
// bounds as every other file the agent reads: a named pipe or a device is
// refused at once instead of blocking or growing memory, and a file far
// larger than a token is refused.
func TestTokenFilesAreBounded(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "token.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "token.big")
	if err := os.WriteFile(big, []byte(strings.Repeat("x", maxTokenFileBytes+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "token")
	if err := os.WriteFile(good, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, file, want string
	}{
		{"fifo", fifo, "not a regular file"},
		{"device", "/dev/zero", "not a regular file"},
		{"too large", big, "limit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				_, err := resolve(Config{Tokens: []TokenConfig{{Name: "ci", Role: "admin", File: c.file}}})
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.file) {
					t.Fatalf("resolve(%s) = %v, want an error naming the file and %q", c.file, err, c.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("resolve(%s) did not return within 5 s", c.file)
			}
		})
	}
	toks, err := resolve(Config{Tokens: []TokenConfig{{Name: "ci", Role: "admin", File: good}}})
	if err != nil || len(toks) != 1 {
		t.Fatalf("resolve(good) = %v, %v", toks, err)
	}
}

// A token named by env is read from the environment the config was loaded
// with, not from the process's.
func TestTokenEnvComesFromTheConfigsEnvironment(t *testing.T) {
	const name = "VITALS_TEST_SECURITY_TOKEN"
	t.Setenv(name, "from-the-process")
	reg := agent.NewRegistry()
	if err := reg.Register(Name, Factory); err != nil {
		t.Fatal(err)
	}
	text := "core:\n  api_gateway:\n    plugins:\n      " + Name + ":\n        tokens:\n          - {name: ci, role: admin, env: " + name + "}\n"
	cfg, err := agent.Parse(context.Background(), "core.yaml", []byte(text), reg, envconfig.MapLookuper(map[string]string{name: " injected\n"}))
	if err != nil {
		t.Fatal(err)
	}
	c, err := decode(cfg.Plugin(Name).Section)
	if err != nil {
		t.Fatal(err)
	}
	toks, err := resolve(c)
	if err != nil || len(toks) != 1 {
		t.Fatalf("resolve = %v, %v", toks, err)
	}
	if toks[0].hash != sha256.Sum256([]byte("injected")) {
		t.Errorf("token %q hashes another value than the injected environment's", toks[0].name)
	}
}
