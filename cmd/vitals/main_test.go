package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/agent/agenttest"

	"go.uber.org/goleak"
)

// binary is the agent built once for the tests in this package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vitals-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "vitals")
	out, err := exec.Command("go", "build", "-buildvcs=auto", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines leaked: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// proc is a running agent binary whose JSON log lines are collected.
type proc struct {
	cmd    *exec.Cmd
	config string // the config file it runs on
	addr   chan string
	mu     sync.Mutex
	logs   []map[string]any
	stdout lockedBuffer
	done   chan error
}

// lockedBuffer collects a process's stdout.
type lockedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	return len(p), nil
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]byte(nil), l.b...)
}

// testConfig is the demo config with the bus on ipc:// sockets in a temp
// dir instead of its fixed demo ports.
func testConfig(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	cfg := strings.NewReplacer(
		"tcp://127.0.0.1:5555", "ipc://"+filepath.Join(dir, "pub.sock"),
		"tcp://127.0.0.1:5556", "ipc://"+filepath.Join(dir, "sub.sock"),
	).Replace(string(defaultConfig))
	if cfg == string(defaultConfig) {
		t.Fatal("demo config no longer has the bus addresses this test replaces")
	}
	path := filepath.Join(dir, "core.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startBinary runs the agent on a free loopback port with JSON logs and the
// demo plugins (see testConfig).
func startBinary(t testing.TB, args ...string) *proc {
	t.Helper()
	return runConfig(t, testConfig(t), args...)
}

// startBinaryReplacing is startBinary with the first old in the demo config
// replaced by new; the test fails if the config no longer has old.
func startBinaryReplacing(t testing.TB, old, new string, args ...string) *proc {
	t.Helper()
	config := testConfig(t)
	data, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), old) {
		t.Fatalf("the demo config no longer has %q, which this test replaces", old)
	}
	if err := os.WriteFile(config, []byte(strings.Replace(string(data), old, new, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	return runConfig(t, config, args...)
}

// runConfig starts the agent on config.
func runConfig(t testing.TB, config string, args ...string) *proc {
	t.Helper()
	args = append([]string{"--log-format", "json", "--config", config}, args...)
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "VITALS_LISTEN_ADDRESS=127.0.0.1:0", "VITALS_CONFIG=")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, config: config, addr: make(chan string, 1), done: make(chan error, 1)}
	cmd.Stdout = &p.stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) != nil {
				rec = map[string]any{"msg": sc.Text()}
			}
			p.mu.Lock()
			p.logs = append(p.logs, rec)
			p.mu.Unlock()
			if rec["msg"] == "listening" {
				p.addr <- rec["address"].(string)
			}
		}
	}()
	go func() {
		<-scanned // all output read before Wait closes the pipe
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// address waits for the agent to say where it listens.
func (p *proc) address(t testing.TB) string {
	t.Helper()
	select {
	case a := <-p.addr:
		p.addr <- a
		return a
	case err := <-p.done:
		t.Fatalf("agent exited before listening: %v\n%s", err, p.logText())
	case <-time.After(20 * time.Second):
		t.Fatalf("agent did not listen\n%s", p.logText())
	}
	return ""
}

// waitReady polls /readyz until it answers 200.
func waitReady(ctx context.Context, addr string) error {
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("/readyz not 200: last error %v", err)
		case <-time.After(time.Millisecond):
		}
	}
}

func (p *proc) messages(msg string) []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []map[string]any
	for _, r := range p.logs {
		if r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

func (p *proc) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	for _, r := range p.logs {
		j, _ := json.Marshal(r)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(30 * time.Second):
		t.Fatalf("agent did not exit\n%s", p.logText())
	}
	return -1
}

func TestBinaryStartsAndStopsCleanly(t *testing.T) {
	p := startBinary(t)
	addr := p.address(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := waitReady(ctx, addr); err != nil {
		t.Fatalf("%v\n%s", err, p.logText())
	}
	resp, err := http.Get("http://" + addr + "/api/v1/admin/plugins")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Plugins []struct{ Name, State string }
	}
	err = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var running []string
	for _, pl := range list.Plugins {
		if pl.State == "running" {
			running = append(running, pl.Name)
		}
	}
	if len(running) == 0 {
		t.Fatalf("the demo config runs no plugin: %+v", list.Plugins)
	}
	checkDemoAIPlugins(t, addr)

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit code %d after SIGTERM\n%s", code, p.logText())
	}
	var started, stopped []string
	for _, r := range p.messages("plugin running") {
		started = append(started, r["plugin"].(string))
	}
	for _, r := range p.messages("plugin stopped") {
		stopped = append(stopped, r["plugin"].(string))
	}
	if strings.Join(started, ",") != strings.Join(running, ",") {
		t.Errorf("started %v, the admin API listed %v running", started, running)
	}
	if len(stopped) != len(started) {
		t.Fatalf("stopped %v, started %v", stopped, started)
	}
	for i := range started {
		if stopped[i] != started[len(started)-1-i] {
			t.Fatalf("stop order %v is not the reverse of start order %v", stopped, started)
		}
	}
	if len(p.messages("shutdown complete")) != 1 {
		t.Errorf("no 'shutdown complete' line\n%s", p.logText())
	}
}

// checkDemoAIPlugins waits until the demo's AI plugins are listed with
// their detected kinds, and finds them in /metrics.
func checkDemoAIPlugins(t *testing.T, addr string) {
	t.Helper()
	want := map[string]string{"demo_llm": "llamacpp", "demo_ollama": "ollama", "demo_embedder": "tei"}
	var got map[string]string
	listed := agenttest.Within(20*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/api/v1/admin/ai-plugins")
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			AIPlugins []struct{ ID, Kind string } `json:"ai_plugins"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		got = map[string]string{}
		for _, p := range body.AIPlugins {
			got[p.ID] = p.Kind
		}
		return fmt.Sprint(got) == fmt.Sprint(want)
	})
	if !listed {
		t.Fatalf("ai plugins = %v, want %v", got, want)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range []string{`vitals_ai_plugins{source="inprocess"} 3`, `vitals_ai_plugin_capability{capability="embeddings",plugin="demo_embedder"} 1`} {
		if !strings.Contains(string(text), line) {
			t.Errorf("/metrics lacks %s", line)
		}
	}
}

func TestSecondSignalExitsAtOnce(t *testing.T) {
	p := startBinary(t)
	p.ready(t)
	// Two signals back to back: the second must not wait for shutdown.
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	code := p.wait(t)
	if code != 0 && code != 1 {
		t.Fatalf("exit code %d", code)
	}
	if code == 1 && len(p.messages("second signal; exiting now")) != 1 {
		t.Errorf("exit 1 without the second-signal line\n%s", p.logText())
	}
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, defaultConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("core:\n  log:\n    level: loud\n  api_gateway:\n    listen: nowhere\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		code    int
		out     string
		errLine []string
	}{
		{"good file", []string{"check-config", good}, 0, good + ": ok", nil},
		{"bad file", []string{"check-config", bad}, 1, "", []string{
			bad + `:3:5: core.log.level: unknown level "loud"`,
			bad + `:5:5: core.api_gateway.listen: invalid address "nowhere"`,
		}},
		{"missing file", []string{"check-config", filepath.Join(dir, "nope.yaml")}, 1, "", []string{"nope.yaml: cannot read: no such file or directory"}},
		{"no file", []string{"check-config"}, 2, "", []string{"usage: vitals check-config FILE"}},
		{"version", []string{"version"}, 0, "vitals ", nil},
		{"bad flag", []string{"--frobnicate"}, 2, "", []string{"flag provided but not defined: -frobnicate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			code := run(tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr %s", code, tt.code, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.out) {
				t.Errorf("stdout %q lacks %q", stdout.String(), tt.out)
			}
			for _, l := range tt.errLine {
				if !strings.Contains(stderr.String(), l) {
					t.Errorf("stderr %q lacks %q", stderr.String(), l)
				}
			}
		})
	}
}

// TestHelpPrintsUsageOnce runs the binary: help goes to stdout once and
// exits 0; a bad flag or argument names it and prints the usage once to
// stderr, exit 2.
func TestHelpPrintsUsageOnce(t *testing.T) {
	tests := []struct {
		args       []string
		code       int
		usageOut   int // times "Usage:" appears on stdout
		usageErr   int // and on stderr
		errMessage string
	}{
		{[]string{"--help"}, 0, 1, 0, ""},
		{[]string{"-h"}, 0, 1, 0, ""},
		{[]string{"help"}, 0, 1, 0, ""},
		{[]string{"--frobnicate"}, 2, 0, 1, "vitals: flag provided but not defined: -frobnicate"},
		{[]string{"--config", "x", "extra"}, 2, 0, 1, `vitals: unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr strings.Builder
			cmd := exec.Command(binary, tt.args...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			cmd.Env = append(os.Environ(), "VITALS_CONFIG=")
			err := cmd.Run()
			if code := cmd.ProcessState.ExitCode(); code != tt.code {
				t.Errorf("exit %d (%v), want %d", code, err, tt.code)
			}
			if n := strings.Count(stdout.String(), "Usage:"); n != tt.usageOut {
				t.Errorf("usage %d times on stdout, want %d:\n%s", n, tt.usageOut, stdout.String())
			}
			if n := strings.Count(stderr.String(), "Usage:"); n != tt.usageErr {
				t.Errorf("usage %d times on stderr, want %d:\n%s", n, tt.usageErr, stderr.String())
			}
			if first, _, _ := strings.Cut(stderr.String(), "\n"); first != tt.errMessage && tt.errMessage != "" {
				t.Errorf("stderr starts %q, want %q", first, tt.errMessage)
			}
			if tt.code == 0 && !strings.Contains(stdout.String(), "-config string") {
				t.Errorf("help lacks the flags:\n%s", stdout.String())
			}
		})
	}
}

func TestDemoConfigIsValid(t *testing.T) {
	reg, err := registry()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr strings.Builder
	f := filepath.Join(t.TempDir(), "core.yaml")
	if err := os.WriteFile(f, defaultConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	if code := checkConfig([]string{f}, &stdout, &stderr); code != 0 {
		t.Fatalf("demo config invalid: %s", stderr.String())
	}
	if len(reg.Names()) == 0 {
		t.Error("the binary registers no plugins")
	}
}

func TestSIGHUPReloads(t *testing.T) {
	p := startBinary(t, "--log-level", "info")
	addr := p.ready(t)
	path := p.config
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	state := func(name string) string {
		resp, err := http.Get("http://" + addr + "/api/v1/admin/plugins/" + name)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st struct{ State string }
		_ = json.NewDecoder(resp.Body).Decode(&st)
		return st.State
	}
	waitState := func(name, want string) {
		t.Helper()
		if !agenttest.Within(20*time.Second, func() bool { return state(name) == want }) {
			t.Fatalf("%s is %s, want %s\n%s", name, state(name), want, p.logText())
		}
	}
	// Watching off, so only the signal can make the change take effect.
	edited := strings.Replace(string(orig), "watch_config: true", "watch_config: false", 1)
	edited = strings.Replace(edited, "demo_embedder: {}", "demo_embedder: {enabled: false}", 1)
	if err := os.WriteFile(path, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitState("demo_embedder", "disabled")

	// A bad file is rejected; the running config stays.
	if err := os.WriteFile(path, []byte(edited+"      no_such_plugin: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !agenttest.Within(20*time.Second, func() bool { return len(p.messages("config rejected; the running config stays")) > 0 }) {
		t.Fatalf("bad config not rejected\n%s", p.logText())
	}
	if got := state("demo_llm"); got != "running" {
		t.Errorf("demo_llm = %s after a rejected reload", got)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// ready waits for the agent to listen and for /readyz to answer 200, and
// returns its address; it fails the test after 20 s.
func (p *proc) ready(t testing.TB) string {
	t.Helper()
	addr := p.address(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := waitReady(ctx, addr); err != nil {
		t.Fatalf("%v\n%s", err, p.logText())
	}
	return addr
}
