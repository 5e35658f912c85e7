package store

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Store files are 0600 whatever the umask and the directory's mode, the
// -wal and -shm SQLite makes beside them too, and a file left readable by
// an older agent is made private at open.
func TestFilesArePrivate(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	legacy := filepath.Join(dir, "legacy.db")
	if err := os.WriteFile(legacy, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join(dir, "logs.db"), legacy} {
		db := open(t, path)
		if err := db.Migrate(context.Background(), "t", testMigs); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(`INSERT INTO rec VALUES (1, x'00')`); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != FileMode {
				t.Errorf("%s has mode %v, want %v", filepath.Base(p), fi.Mode().Perm(), FileMode)
			}
		}
	}
}

// roDirEnv names, for the child process of TestReadOnlyDirError, the
// directory to open a store in.
const roDirEnv = "VITALS_STORE_TEST_RO_DIR"

// A data directory the agent cannot write is an error naming it, its mode
// and the user. Root writes anywhere, so as root the open runs in a child
// process as nobody.
func TestReadOnlyDirError(t *testing.T) {
	if dir := os.Getenv(roDirEnv); dir != "" {
		_, err := Open(context.Background(), filepath.Join(dir, "logs.db"))
		io.WriteString(os.Stdout, "open error: "+errString(err)+"\n")
		return
	}
	base := t.TempDir()
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "data")
	if err := os.Mkdir(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	var msg string
	if os.Geteuid() != 0 {
		_, err := Open(context.Background(), filepath.Join(dir, "logs.db"))
		msg = errString(err)
	} else {
		msg = openAsNobody(t, base, dir)
	}
	t.Logf("error: %s", msg)
	for _, want := range []string{dir, "permission denied", "mode dr-xr-xr-x", "uid"} {
		if !strings.Contains(msg, want) {
			t.Errorf("open in a read-only directory: %q, want it to say %q", msg, want)
		}
	}
}

// openAsNobody runs TestReadOnlyDirError's open in a copy of the test
// binary, as user nobody, and returns the error it printed.
func openAsNobody(t *testing.T, base, dir string) string {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "store.test")
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	// The child must reach the binary: open up the temp dirs above base.
	for p := filepath.Dir(base); p != os.TempDir() && p != "/" && p != "."; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "-test.run=^TestReadOnlyDirError$", "-test.count=1")
	cmd.Env = append(os.Environ(), roDirEnv+"="+dir)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child as nobody: %v\n%s", err, out)
	}
	_, line, ok := strings.Cut(string(out), "open error: ")
	if !ok {
		t.Fatalf("child printed no error:\n%s", out)
	}
	msg, _, _ := strings.Cut(line, "\n")
	return msg
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
