package probestest

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"testing"
)

// fakeOllamaEnv makes a test binary a fake `ollama serve` ("serve": it
// starts a runner with --model naming the blob of fakeOllamaBlobEnv and
// one without --model, says "ready" once both have, and waits for its
// stdin to close) or one of its runners ("runner": says "ready" and waits
// for its stdin to close).
const (
	fakeOllamaEnv     = "VITALS_FAKE_OLLAMA"
	fakeOllamaBlobEnv = "VITALS_FAKE_OLLAMA_BLOB"
)

// FakeOllamaMain runs the test binary as the fake Ollama process its
// environment asks for, and exits; it returns false, at once, in a test
// binary that is none. Call it first in TestMain.
func FakeOllamaMain() bool {
	switch os.Getenv(fakeOllamaEnv) {
	case "":
		return false
	case "runner":
		// Said once this process runs as itself, with its own memory and
		// command line, which the test then reads.
		_, _ = os.Stdout.WriteString("ready\n")
		_, _ = io.Copy(io.Discard, os.Stdin)
	case "serve":
		var stdins []io.Closer
		var kids []*exec.Cmd
		for _, args := range [][]string{
			{"runner", "--model", "/tmp/x/blobs/sha256-" + os.Getenv(fakeOllamaBlobEnv), "--port", "0"},
			{"runner", "--port", "0"},
		} {
			c := exec.Command(os.Args[0], args...)
			c.Env = append(os.Environ(), fakeOllamaEnv+"=runner")
			in, err := c.StdinPipe()
			if err != nil {
				os.Exit(2)
			}
			out, err := c.StdoutPipe()
			if err != nil || c.Start() != nil {
				os.Exit(2)
			}
			// The server is ready once its runners are.
			if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
				os.Exit(2)
			}
			stdins, kids = append(stdins, in), append(kids, c)
		}
		_, _ = os.Stdout.WriteString("ready\n")
		_, _ = io.Copy(io.Discard, os.Stdin)
		for i, k := range kids {
			_ = stdins[i].Close()
			_ = k.Wait()
		}
	}
	os.Exit(0)
	return true
}

// StartFakeOllama starts the test binary (whose TestMain calls
// FakeOllamaMain) as a fake `ollama serve` with two runner children, one
// with --model naming the weights blob whose sha256 is blob and one
// without, and returns once all three run. It returns the server's PID and
// a stop that ends them all; the test's cleanup stops them too.
func StartFakeOllama(t testing.TB, blob string) (pid int, stop func()) {
	t.Helper()
	serve := exec.Command(os.Args[0])
	serve.Env = append(os.Environ(), fakeOllamaEnv+"=serve", fakeOllamaBlobEnv+"="+blob)
	in, err := serve.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := serve.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			_ = in.Close()
			_ = serve.Wait()
		}
	}
	t.Cleanup(stop)
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("fake ollama serve said %q, %v; want ready", line, err)
	}
	return serve.Process.Pid, stop
}
