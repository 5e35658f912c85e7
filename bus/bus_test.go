package bus

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	busv1 "github.com/vitals-dev/vitals/proto/vitals/bus/v1"
)

func TestValidTopic(t *testing.T) {
	cases := []struct {
		topic string
		ok    bool
	}{
		{"logs.info.ext_manager", true},
		{"plugin.announce", true},
		{"health.request.gpu-probe", true},
		{"reply.alpha.req.ab12-3", true},
		{"logs.info.MyPlugin", true},
		{"", false},
		{".logs", false},
		{"logs.", false},
		{"logs..info", false},
		{"Logs.info", false},
		{"logs info", false},
		{"logs.\x00", false},
		{string(make([]byte, 300)), false},
	}
	for _, tc := range cases {
		t.Run(tc.topic, func(t *testing.T) {
			err := ValidTopic(tc.topic)
			if (err == nil) != tc.ok {
				t.Fatalf("ValidTopic(%q) = %v, want ok=%v", tc.topic, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidTopic) {
				t.Fatalf("error %v is not ErrInvalidTopic", err)
			}
		})
	}
}

func TestPermissions(t *testing.T) {
	p := DefaultPermissions("alpha")
	cases := []struct {
		name string
		got  bool
		want bool
	}{
		{"publish own", p.CanPublish("alpha.x"), true},
		{"publish logs", p.CanPublish("logs.info.alpha"), true},
		{"publish other", p.CanPublish("beta.x"), false},
		{"publish reply", p.CanPublish("reply.beta.1"), true},
		{"subscribe own", p.CanSubscribe("alpha", "alpha.x"), true},
		{"subscribe wider than allowed", p.CanSubscribe("alpha", "alp"), false},
		{"subscribe everything", p.CanSubscribe("alpha", ""), false},
		{"subscribe own replies", p.CanSubscribe("alpha", "reply.alpha.1"), true},
		{"subscribe other replies", p.CanSubscribe("alpha", "reply.beta."), false},
		{"allow all", AllowAll.CanSubscribe("x", ""), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Fatalf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
}

func TestFamilyIsBounded(t *testing.T) {
	for topic, want := range map[string]string{"logs.info.x": "logs", "alpha.x": "other", "lifecycle.a": "lifecycle", "": "other"} {
		if got := Family(topic); got != want {
			t.Errorf("Family(%q) = %q, want %q", topic, got, want)
		}
	}
}

// FuzzEnvelope runs the client's receive path on any frame: decodeFrames
// then MessageOf, as readLoop and dispatch do. A message it accepts must
// survive the client's publish encoding (envelopeOf) and decoding again
// unchanged, but for the peer fields, which only the broker sets; the
// trace carrier and topic check must cope with any content.
func FuzzEnvelope(f *testing.F) {
	seed, _ := proto.Marshal(&busv1.Envelope{Id: "1", Source: "s", ContentType: "text/plain", Traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", Payload: []byte("hi")})
	f.Add("logs.info.x", seed)
	f.Add("", []byte{})
	f.Add("a", []byte{0xff, 0xff, 0xff})
	f.Add("reply.x", []byte{0x4a, 0x80, 0x80, 0x80, 0x80, 0x10})
	f.Fuzz(func(t *testing.T, topic string, data []byte) {
		var env busv1.Envelope
		if malformed := decodeFrames([][]byte{[]byte(topic), data}, &env); malformed != "" {
			if malformed != MalformedEnvelope {
				t.Fatalf("two frames called %q", malformed)
			}
			return
		}
		msg := MessageOf(topic, &env)
		if msg.Topic != topic || string(msg.Payload) != string(env.GetPayload()) || msg.ID != env.GetId() || msg.Peer != env.GetPeer() {
			t.Fatalf("message %+v does not carry envelope %v", msg, &env)
		}
		out, err := proto.Marshal(envelopeOf(msg.Source, msg))
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		var again busv1.Envelope
		if malformed := decodeFrames([][]byte{[]byte(topic), out}, &again); malformed != "" {
			t.Fatalf("the client's own envelope is malformed: %s", malformed)
		}
		back := MessageOf(topic, &again)
		msg.Peer, msg.PeerAddress = "", ""
		if !back.Time.Equal(msg.Time) {
			t.Fatalf("time %v came back as %v", msg.Time, back.Time)
		}
		back.Time, msg.Time = time.Time{}, time.Time{}
		if fmt.Sprint(back) != fmt.Sprint(msg) {
			t.Fatalf("round trip changed the message:\n%+v\n%+v", msg, back)
		}
		c := envCarrier{&env}
		_ = c.Get("traceparent")
		_ = ValidTopic(env.GetReplyTo())
	})
}
