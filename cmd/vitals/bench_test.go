package main

import (
	"context"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// BenchmarkExecVersion is the baseline: exec the same binary for a command
// that does no work, so BenchmarkExecToReady reads as a ratio against the
// cost of starting the process at all.
func BenchmarkExecVersion(b *testing.B) {
	for b.Loop() {
		if err := exec.Command(binary, "version").Run(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExecToReady measures the time from exec to the first 200 from
// /readyz with the demo config's plugins, then stops the agent (not timed).
func BenchmarkExecToReady(b *testing.B) {
	for i := 0; i < b.N; i++ {
		b.StartTimer()
		p := startBinary(b)
		addr := p.address(b)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := waitReady(ctx, addr)
		cancel()
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		<-p.done
	}
}
