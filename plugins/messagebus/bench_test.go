package messagebus

import (
	"context"
	"encoding/binary"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/vitals-dev/vitals/bus"
	"github.com/vitals-dev/vitals/internal/zmtp"
)

// Benchmarks run only with -bench. Each moves b.N 100-byte payloads from
// one publisher to one subscriber on loopback TCP with at most `window`
// messages in flight, and reports msgs/s and the p50/p99 publish-to-receive
// latency under that load. The baselines are zmq4's own sockets in the
// same run: a direct PUB→SUB pair and the bare SUB→PUB forwarder that
// docs/dependencies.md describes (go-zeromq/zmq4).

const (
	payloadSize = 100
	window      = 1000
)

type flow struct {
	recv     atomic.Int64
	mu       sync.Mutex
	lat      []time.Duration
	progress chan struct{}
}

func newFlow(n int) *flow {
	return &flow{lat: make([]time.Duration, 0, n), progress: make(chan struct{}, 1)}
}

func (f *flow) got(payload []byte) {
	if len(payload) >= 8 {
		sent := int64(binary.LittleEndian.Uint64(payload))
		f.mu.Lock()
		f.lat = append(f.lat, time.Duration(time.Now().UnixNano()-sent))
		f.mu.Unlock()
	}
	f.recv.Add(1)
	select {
	case f.progress <- struct{}{}:
	default:
	}
}

// waitBelow blocks until fewer than window messages are in flight.
func (f *flow) waitBelow(b *testing.B, sent int64) {
	for sent-f.recv.Load() >= window {
		select {
		case <-f.progress:
		case <-time.After(10 * time.Second):
			b.Fatalf("stalled: sent %d, received %d", sent, f.recv.Load())
		}
	}
}

func (f *flow) report(b *testing.B, elapsed time.Duration) {
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	f.mu.Lock()
	defer f.mu.Unlock()
	slices.Sort(f.lat)
	if len(f.lat) > 0 {
		b.ReportMetric(float64(f.lat[len(f.lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(f.lat[len(f.lat)*99/100].Microseconds()), "p99-µs")
	}
}

func stamp(p []byte) []byte {
	binary.LittleEndian.PutUint64(p, uint64(time.Now().UnixNano()))
	return p
}

// runZMQ drives zmq4 sockets: pub sends, sub receives.
func runZMQ(b *testing.B, pub, sub zmq4.Socket) {
	f := newFlow(b.N)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < b.N; i++ {
			m, err := sub.Recv()
			if err != nil {
				return
			}
			f.got(m.Frames[1])
		}
	}()
	topic := []byte("logs.info.bench")
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		f.waitBelow(b, int64(i))
		if err := pub.Send(zmq4.NewMsgFrom(topic, stamp(make([]byte, payloadSize)))); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		b.Fatalf("received %d of %d", f.recv.Load(), b.N)
	}
	f.report(b, time.Since(start))
}

// connect dials sub to ep, subscribes to everything and waits until a
// probe sent by pub arrives.
func warmZMQ(b *testing.B, pub, sub zmq4.Socket) {
	must(b, sub.SetOption(zmq4.OptionSubscribe, ""))
	got := make(chan struct{})
	go func() {
		if _, err := sub.Recv(); err == nil {
			close(got)
		}
	}()
	for {
		_ = pub.Send(zmq4.NewMsgFrom([]byte("warm"), make([]byte, 8)))
		select {
		case <-got:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func BenchmarkThroughput(b *testing.B) {
	b.Run("direct_pubsub", func(b *testing.B) {
		ep := freeAddr(b)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		pub := zmq4.NewPub(ctx)
		defer pub.Close()
		must(b, pub.Listen(ep))
		sub := zmq4.NewSub(ctx)
		defer sub.Close()
		must(b, sub.Dial(ep))
		warmZMQ(b, pub, sub)
		runZMQ(b, pub, sub)
	})
	b.Run("bare_forwarder", func(b *testing.B) {
		front, back := freeAddr(b), freeAddr(b)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		fsub := zmq4.NewSub(ctx)
		defer fsub.Close()
		must(b, fsub.Listen(front))
		must(b, fsub.SetOption(zmq4.OptionSubscribe, ""))
		fpub := zmq4.NewPub(ctx)
		defer fpub.Close()
		must(b, fpub.Listen(back))
		go func() {
			for {
				m, err := fsub.Recv()
				if err != nil {
					return
				}
				_ = fpub.Send(m)
			}
		}()
		pub := zmq4.NewPub(ctx)
		defer pub.Close()
		must(b, pub.Dial(front))
		sub := zmq4.NewSub(ctx)
		defer sub.Close()
		must(b, sub.Dial(back))
		warmZMQ(b, pub, sub)
		runZMQ(b, pub, sub)
	})
	for _, tc := range []struct {
		name string
		tp   func() *sdktrace.TracerProvider
	}{
		{"broker_tracing_off", nil},
		{"broker_tracing_sampled_1pct", func() *sdktrace.TracerProvider {
			return sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.01))), sdktrace.WithBatcher(discard{}))
		}},
		{"broker_tracing_always", func() *sdktrace.TracerProvider {
			return sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithBatcher(discard{}))
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			// The broker's own throughput: external publishers' rates lifted.
			e := startBroker(b, addrsYAML(freeAddr(b), freeAddr(b), "subscriber_queue: 20000", "publish_rate: 100000000", "publish_bytes_rate: 1073741824"))
			o := bus.Options{QueueSize: 20000, SubscriptionSize: 20000}
			if tc.tp != nil {
				tp := tc.tp()
				defer tp.Shutdown(context.Background())
				o.TracerProvider = tp
			}
			o.Name = "pub"
			pub := e.client(b, o)
			o.Name = "sub"
			sub := e.client(b, o)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ch, err := sub.Subscribe(ctx, "logs.")
			must(b, err)
			must(b, sub.Sync(ctx))
			f := newFlow(b.N)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := 0; i < b.N; i++ {
					m, ok := <-ch
					if !ok {
						return
					}
					f.got(m.Payload)
				}
			}()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				f.waitBelow(b, int64(i))
				if err := pub.Publish(ctx, "logs.info.bench", bus.Message{Payload: stamp(make([]byte, payloadSize))}); err != nil {
					b.Fatal(err)
				}
			}
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				b.Fatalf("received %d of %d", f.recv.Load(), b.N)
			}
			f.report(b, time.Since(start))
		})
	}
}

type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// BenchmarkSlowSubscriberMemory publishes b.N 100-byte messages as fast as
// possible while the only subscriber never reads, and reports how much the
// heap grew: unbounded for a zmq4 PUB socket, bounded by the high-water
// marks for the bus (publisher client and broker in this process).
func BenchmarkSlowSubscriberMemory(b *testing.B) {
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	b.Run("zmq4_pub", func(b *testing.B) {
		ep := freeAddr(b)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		pub := zmq4.NewPub(ctx)
		defer pub.Close()
		must(b, pub.Listen(ep))
		stuck, err := zmtp.Dial(ctx, ep, zmtp.Sub, zmtp.Credentials{})
		must(b, err)
		defer stuck.Close()
		must(b, stuck.SendFlush([]byte{1}))
		for len(pub.(zmq4.Topics).Topics()) == 0 {
			runtime.Gosched()
		}
		before := heap()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			_ = pub.Send(zmq4.NewMsgFrom([]byte("logs.info.x"), make([]byte, payloadSize)))
		}
		b.StopTimer()
		b.ReportMetric(float64(int64(heap())-int64(before))/(1<<20), "heap-MB")
	})
	b.Run("bus", func(b *testing.B) {
		e := startBroker(b, addrsYAML(freeAddr(b), freeAddr(b), "publish_rate: 100000000", "publish_bytes_rate: 1073741824"))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		stuck, err := zmtp.Dial(ctx, e.cfg.SubscribeAddress, zmtp.Sub, zmtp.Credentials{})
		must(b, err)
		defer stuck.Close()
		must(b, stuck.SendFlush([]byte{1}))
		pub := e.client(b, bus.Options{Name: "pub", Metrics: e.broker.Metrics()})
		for len(*e.broker.srv.subs.Load()) == 0 {
			runtime.Gosched()
		}
		before := heap()
		b.ResetTimer()
		dropped := 0
		for i := 0; i < b.N; i++ {
			if pub.Publish(ctx, "logs.info.x", bus.Message{Payload: make([]byte, payloadSize)}) != nil {
				dropped++
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(int64(heap())-int64(before))/(1<<20), "heap-MB")
		b.ReportMetric(float64(dropped)/float64(b.N), "pub-drop-ratio")
	})
}
