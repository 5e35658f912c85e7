package messagebus

import (
	"context"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/bus"
)

func TestFactoryConfig(t *testing.T) {
	cases := []struct {
		name    string
		yaml    string
		wantErr string // substring; "" means valid
	}{
		{"empty section", "", ""},
		{"ipc", "publish_address: ipc:///tmp/a.sock\nsubscribe_address: ipc:///tmp/b.sock", ""},
		{"unknown key", "publish_adress: tcp://127.0.0.1:1", "publish_adress"},
		{"bad scheme", "publish_address: udp://127.0.0.1:1", "publish_address"},
		{"no port", "subscribe_address: tcp://127.0.0.1", "subscribe_address"},
		{"same address", "publish_address: tcp://127.0.0.1:7000\nsubscribe_address: tcp://127.0.0.1:7000", "must differ"},
		{"tiny limit", "max_message_bytes: 10", "max_message_bytes"},
		{"zero queue", "subscriber_queue: 0", "subscriber_queue"},
		{"bad duration", "handshake_timeout: soon", "handshake_timeout"},
		{"queue bytes below a message", "subscriber_queue_bytes: 1000", "subscriber_queue_bytes"},
		{"total below one queue", "queue_bytes: 1048576\nsubscriber_queue_bytes: 2097152", "queue_bytes"},
		{"no subscriptions", "max_subscriptions: 0", "max_subscriptions"},
		{"zero write timeout", "write_timeout: 0s", "write_timeout"},
		{"one connection", "max_connections: 1", "max_connections"},
		{"zero idle timeout", "idle_timeout: 0s", "idle_timeout"},
		{"zero publish rate", "publish_rate: 0", "publish_rate"},
		{"read bytes below a message", "read_bytes: 1000", "read_bytes"},
		{"zero read wait", "read_wait: 0s", "read_wait"},
		{"zero message timeout", "message_timeout: 0s", "message_timeout"},
		{"negative subscribe rate", "subscribe_rate: -1", "subscribe_rate"},
		{"bad plugin name", "permissions:\n  Bad-Name: {publish: [x.]}", "permissions.Bad-Name"},
		{"empty prefix", "permissions:\n  a: {publish: [\"\"]}", "bad prefix"},
		{"auth without users", "auth: {users: []}", "auth.users"},
		{"user without password", "auth:\n  users:\n    - {username: a}", "exactly one of password"},
		{"duplicate user", "auth:\n  users:\n    - {username: a, password: x}\n    - {username: a, password: y}", "duplicate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := agent.NewSection(tc.yaml)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Factory(s)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if p.Metadata().Name != Name {
					t.Fatalf("name %q", p.Metadata().Name)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

// TestAddressesFromEnvironment: VITALS_BUS_PUBLISH_ADDRESS and
// VITALS_BUS_SUBSCRIBE_ADDRESS win over the file, and a bad value is an
// error that names the variable.
func TestAddressesFromEnvironment(t *testing.T) {
	reg := agent.NewRegistry()
	if err := reg.Register(Name, Factory); err != nil {
		t.Fatal(err)
	}
	const file = `core:
  api_gateway:
    plugins:
      message_bus:
        publish_address: tcp://127.0.0.1:5555
        subscribe_address: tcp://127.0.0.1:5556
`
	broker := func(t *testing.T, file string, env map[string]string) (*Broker, error) {
		t.Helper()
		cfg, err := agent.Parse(context.Background(), "core.yaml", []byte(file), reg, envconfig.MapLookuper(env))
		if err != nil {
			return nil, err
		}
		p, err := reg.New(Name, cfg.Plugin(Name).Section)
		if err != nil {
			t.Fatal(err)
		}
		return p.(*Broker), nil
	}

	b, err := broker(t, file, map[string]string{
		"VITALS_BUS_PUBLISH_ADDRESS":   "ipc:///run/vitals/pub.sock",
		"VITALS_BUS_SUBSCRIBE_ADDRESS": "tcp://0.0.0.0:7556",
	})
	if err != nil {
		t.Fatal(err)
	}
	if b.cfg.PublishAddress != "ipc:///run/vitals/pub.sock" || b.cfg.SubscribeAddress != "tcp://0.0.0.0:7556" {
		t.Errorf("addresses %s, %s; want the environment's", b.cfg.PublishAddress, b.cfg.SubscribeAddress)
	}

	// One variable alone; the other address stays the file's.
	b, err = broker(t, file, map[string]string{"VITALS_BUS_SUBSCRIBE_ADDRESS": "tcp://127.0.0.1:7556"})
	if err != nil {
		t.Fatal(err)
	}
	if b.cfg.PublishAddress != "tcp://127.0.0.1:5555" || b.cfg.SubscribeAddress != "tcp://127.0.0.1:7556" {
		t.Errorf("addresses %s, %s", b.cfg.PublishAddress, b.cfg.SubscribeAddress)
	}

	// A section with no keys is overridden too.
	b, err = broker(t, "core:\n  api_gateway:\n    plugins:\n      message_bus:\n", map[string]string{"VITALS_BUS_PUBLISH_ADDRESS": "tcp://127.0.0.1:7555"})
	if err != nil {
		t.Fatal(err)
	}
	if b.cfg.PublishAddress != "tcp://127.0.0.1:7555" || b.cfg.SubscribeAddress != bus.DefaultSubscribeEndpoint {
		t.Errorf("addresses %s, %s", b.cfg.PublishAddress, b.cfg.SubscribeAddress)
	}

	_, err = broker(t, file, map[string]string{"VITALS_BUS_PUBLISH_ADDRESS": "udp://127.0.0.1:1"})
	want := "environment: VITALS_BUS_PUBLISH_ADDRESS (core.api_gateway.plugins.message_bus.publish_address): "
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want it to contain %q", err, want)
	}
	_, err = broker(t, file, map[string]string{"VITALS_BUS_SUBSCRIBE_ADDRESS": "tcp://127.0.0.1:5555"})
	want = "environment: VITALS_BUS_SUBSCRIBE_ADDRESS (core.api_gateway.plugins.message_bus.subscribe_address): must differ"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want it to contain %q", err, want)
	}

	// A section made outside a loaded config reads no environment, so a
	// variable in the shell does not leak into tests.
	t.Setenv("VITALS_BUS_PUBLISH_ADDRESS", "tcp://127.0.0.1:7555")
	sec, err := agent.NewSection("")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Factory(sec)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.(*Broker).cfg.PublishAddress; got != bus.DefaultPublishEndpoint {
		t.Errorf("NewSection broker publishes on %s, want the default", got)
	}
}

// TestEveryProblemReported: one run names every bad value of the section.
func TestEveryProblemReported(t *testing.T) {
	s, err := agent.NewSection("publish_address: nope\nmax_message_bytes: 1\nhandshake_timeout: -1s\n")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Factory(s)
	for _, want := range []string{"section.publish_address: ", "section.max_message_bytes: must be between", "section.handshake_timeout: must be positive"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to contain %q", err, want)
		}
	}
}
