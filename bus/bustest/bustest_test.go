package bustest

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vitals-dev/vitals/bus"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestInMemoryBus(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b := New()
	a, _ := b.ClientFor("alpha")
	g := b.Client("gpu", bus.AllowAll)
	defer a.Close()
	defer g.Close()
	reqs, err := g.Subscribe(ctx, "health.request.gpu")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for r := range reqs {
			_ = bus.Reply(ctx, g, r, bus.Message{Payload: []byte("ok")})
		}
	}()
	tests := []struct {
		name    string
		run     func() error
		wantErr error
	}{
		{"publish own namespace", func() error { return a.Publish(ctx, "alpha.x", bus.Message{}) }, nil},
		{"publish denied", func() error { return a.Publish(ctx, "alerts.x", bus.Message{}) }, bus.ErrDenied},
		{"invalid topic", func() error { return a.Publish(ctx, "a..b", bus.Message{}) }, bus.ErrInvalidTopic},
		{"request", func() error {
			r, err := g.Request(ctx, "health.request.gpu", bus.Message{})
			if err == nil && string(r.Payload) != "ok" {
				return errors.New("wrong reply")
			}
			return err
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.run(); !errors.Is(err, tc.wantErr) {
				t.Fatalf("got %v, want %v", err, tc.wantErr)
			}
		})
	}
	if len(b.Published()) < 1 {
		t.Fatal("nothing recorded")
	}
}
