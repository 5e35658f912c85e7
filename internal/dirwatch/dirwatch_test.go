package dirwatch

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestWatch(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "d")
	calls := make(chan struct{}, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	ready := make(chan struct{})
	go func() {
		defer close(done)
		Watch(ctx, dir, Options{Settle: 10 * time.Millisecond, Retry: 20 * time.Millisecond}, func() { calls <- struct{}{} }, ready)
	}()
	defer func() { cancel(); <-done }()
	<-ready
	wait := func(what string) {
		t.Helper()
		select {
		case <-calls:
		case <-time.After(10 * time.Second):
			t.Fatalf("no call after %s", what)
		}
	}

	if err := os.Mkdir(dir, 0o700); err != nil { // missing at first, then appears
		t.Fatal(err)
	}
	wait("the directory appeared")
	// A burst of writes settles into at least one call.
	for i := 0; i < 5; i++ {
		if err := os.WriteFile(filepath.Join(dir, "f.yaml"), []byte{byte(i)}, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	wait("a burst of writes")
	tmp := filepath.Join(dir, ".g.tmp")
	if err := os.WriteFile(tmp, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "g.yaml")); err != nil {
		t.Fatal(err)
	}
	wait("a rename into place")
}

func TestReadyWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ready := make(chan struct{})
	Watch(ctx, t.TempDir(), Options{}, func() {}, ready)
	select {
	case <-ready:
	default:
		t.Fatal("ready not closed")
	}
}
