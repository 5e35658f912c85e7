package messagebus

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/security/null"

	"github.com/vitals-dev/vitals/plugins/messagebus/bus"
	"github.com/vitals-dev/vitals/plugins/messagebus/internal/zmtp"
)

// rawPeer connects to a broker endpoint as a ZeroMQ socket of type typ
// (NULL security) and returns the bare connection after the handshake, for
// writing frames the bus client would never send.
func rawPeer(t *testing.T, ep string, typ zmq4.SocketType) net.Conn {
	t.Helper()
	network, addr, err := zmtp.Endpoint(ep)
	must(t, err)
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	must(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := zmq4.Open(c, null.Security(), typ, zmq4.SocketIdentity(nil), false, nil); err != nil {
		t.Fatalf("handshake with %s: %v", ep, err)
	}
	_ = c.SetDeadline(time.Time{})
	return c
}

// heapPeak samples the heap in use until stop is closed and returns the
// largest growth over the value at the start, in bytes.
func heapPeak(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	go func() {
		var peak uint64
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > base && ms.HeapInuse-base > peak {
				peak = ms.HeapInuse - base
			}
			select {
			case <-stop:
				out <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return out
}

// An endless multipart message of empty frames is cut off as it arrives:
// the broker disconnects the peer after maxFrames frames, and its heap does
// not grow with what the peer sends.
func TestEndlessMultipartIsCutOff(t *testing.T) {
	e := startBroker(t, addrsYAML(freeAddr(t), freeAddr(t)))
	c := rawPeer(t, e.cfg.PublishAddress, zmq4.Pub)

	stop := make(chan struct{})
	peak := heapPeak(stop)
	// 64 MiB of empty frames with the MORE flag: 32 Mi frames, each a
	// slice header (24 bytes) in zmq4's message if the broker kept them.
	chunk := bytes.Repeat([]byte{0x01, 0x00}, 32<<10)
	w := bufio.NewWriter(c)
	_ = c.SetWriteDeadline(time.Now().Add(20 * time.Second))
	var sent int
	var werr error
	for sent < 64<<20 {
		if _, werr = w.Write(chunk); werr != nil {
			break
		}
		sent += len(chunk)
	}
	close(stop)
	if grown := <-peak; grown > 16<<20 {
		t.Fatalf("heap grew by %d MiB while %d MiB of empty frames were sent", grown>>20, sent>>20)
	}
	if werr == nil {
		t.Fatalf("the broker read all %d MiB of one message without disconnecting", sent>>20)
	}
	var ne net.Error
	if errors.As(werr, &ne) && ne.Timeout() {
		t.Fatalf("write timed out after %d MiB: the broker stopped reading without disconnecting", sent>>20)
	}
	eventually(t, 5*time.Second, "the disconnect counted", func() bool {
		return e.counter("disconnects", bus.DisconnectOversized) == 1 && e.counter("malformed", bus.MalformedOversize) == 1
	})
}

// A frame larger than max_message_bytes disconnects its sender before its
// body is read; other publishers go on.
func TestOversizedFrameDisconnects(t *testing.T) {
	e := startBroker(t, addrsYAML(freeAddr(t), freeAddr(t), "max_message_bytes: 2048"))
	ctx := ctxT(t, 10*time.Second)
	sub := e.client(t, bus.Options{Name: "s"})
	ch, err := sub.Subscribe(ctx, "logs.")
	must(t, err)
	must(t, sub.Sync(ctx))

	cases := []struct {
		name   string
		frames [][]byte
	}{
		{"oversized frame", [][]byte{[]byte("logs.info.x"), make([]byte, 64<<10)}},
		{"oversized total", [][]byte{[]byte("logs.info.x"), make([]byte, 1500), make([]byte, 1500)}},
		{"too many frames", bytes.Split(bytes.Repeat([]byte{'x'}, maxFrames+1), nil)},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bad, err := zmtp.Dial(ctx, e.cfg.PublishAddress, zmtp.Pub, zmtp.Credentials{})
			must(t, err)
			defer bad.Close()
			if _, err := bad.Recv(); err != nil { // the broker's subscription
				t.Fatal(err)
			}
			must(t, bad.SendFlush(tc.frames...))
			if _, err := bad.Recv(); err == nil {
				t.Fatal("the broker sent something instead of disconnecting")
			}
			eventually(t, 5*time.Second, "disconnect counted", func() bool {
				return e.counter("disconnects", bus.DisconnectOversized) == float64(i+1)
			})
		})
	}
	pub := e.client(t, bus.Options{Name: "p"})
	must(t, pub.Publish(ctx, "logs.info.p", bus.Message{ID: "after"}))
	if m := recv(t, ch, 5*time.Second); m.ID != "after" {
		t.Fatalf("got %+v", m)
	}
}
