package bus

import (
	"bytes"
	"context"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vitals-dev/vitals/internal/zmtp"
)

// A client bounds what it reads from the broker as the broker bounds what
// it reads from peers: a hostile endpoint that answers the subscribe
// address with an endless multipart message of empty frames is cut off
// after a few frames, and the client's heap does not grow with it.
func TestClientCutsOffEndlessMultipart(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	sent := make(chan int, 1)
	go func() {
		raw, err := l.Accept()
		_ = l.Close() // one connection: the client's redials are refused
		if err != nil {
			sent <- 0
			return
		}
		defer raw.Close()
		if _, err := zmtp.Server(raw, zmtp.Pub, zmtp.ServerOptions{}); err != nil {
			sent <- 0
			return
		}
		chunk := bytes.Repeat([]byte{0x01, 0x00}, 32<<10)
		_ = raw.SetWriteDeadline(time.Now().Add(20 * time.Second))
		n := 0
		for n < 64<<20 {
			w, err := raw.Write(chunk)
			n += w
			if err != nil {
				break
			}
		}
		sent <- n
	}()

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	m := NewMetrics()
	c := Dial(Options{
		PublishEndpoint:   "tcp://127.0.0.1:1", // nothing there; only the subscriber side matters
		SubscribeEndpoint: "tcp://" + l.Addr().String(),
		MaxMessageBytes:   1024,
		Metrics:           m,
	})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Subscribe(ctx, "x."); err != nil {
		t.Fatal(err)
	}
	var n int
	select {
	case n = <-sent:
	case <-ctx.Done():
		t.Fatal("the hostile broker never finished")
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if n >= 64<<20 {
		t.Fatalf("the client read all %d MiB of one message", n>>20)
	}
	if grown := int64(after.HeapInuse) - int64(before.HeapInuse); grown > 16<<20 {
		t.Fatalf("heap grew by %d MiB while %d MiB of empty frames arrived", grown>>20, n>>20)
	}
	if got := testutil.ToFloat64(m.Malformed.WithLabelValues(MalformedOversize)); got < 1 {
		t.Fatalf("oversized messages counted %v, want at least 1", got)
	}
}
