package messagebus

import (
	"context"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/plugins/messagebus/bus"
)

func TestSmoke(t *testing.T) {
	e := startBroker(t, addrsYAML(freeAddr(t), freeAddr(t)))
	c := e.client(t, bus.Options{Name: "t"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ch, err := c.Subscribe(ctx, "t.")
	must(t, err)
	must(t, c.Sync(ctx))
	must(t, c.Publish(ctx, "t.hello", bus.Message{Payload: []byte("hi")}))
	m := recv(t, ch, 3*time.Second)
	if string(m.Payload) != "hi" || m.Topic != "t.hello" || m.Source != "t" {
		t.Fatalf("got %+v", m)
	}
}
