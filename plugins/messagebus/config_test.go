package messagebus

import (
	"strings"
	"testing"

	"github.com/vitals-dev/vitals/agent"
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
