package messagebus

import (
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	busv1 "github.com/vitals-dev/vitals/proto/vitals/bus/v1"
)

// FuzzStampPeer: whatever peer fields a publisher's envelope claims, the
// envelope the broker forwards decodes with the broker's peer id and
// address, and every other field as the publisher sent it.
func FuzzStampPeer(f *testing.F) {
	seed, _ := proto.Marshal(&busv1.Envelope{Id: "1", Source: "s", Peer: "forged", PeerAddress: "10.0.0.9:1", Payload: []byte("hi")})
	f.Add(seed, "p-1", "127.0.0.1:5")
	f.Add([]byte{}, "", "")
	f.Add([]byte{0x4a, 0x80, 0x80, 0x80, 0x80, 0x10}, "p", "")
	f.Fuzz(func(t *testing.T, data []byte, id, addr string) {
		if !utf8.ValidString(id) || !utf8.ValidString(addr) {
			return // the broker makes both, its peer id and the socket's address
		}
		var sent busv1.Envelope
		if proto.Unmarshal(data, &sent) != nil {
			return // the broker counts it malformed and forwards nothing
		}
		var got busv1.Envelope
		if err := proto.Unmarshal(stampPeer(data, peer{id: id, addr: addr}), &got); err != nil {
			t.Fatalf("stamped envelope does not decode: %v", err)
		}
		if got.GetPeer() != id || got.GetPeerAddress() != addr {
			t.Fatalf("peer %q %q, want %q %q", got.GetPeer(), got.GetPeerAddress(), id, addr)
		}
		got.Peer, got.PeerAddress = sent.Peer, sent.PeerAddress
		if !proto.Equal(&got, &sent) {
			t.Fatalf("stamping changed other fields:\n%v\n%v", &sent, &got)
		}
	})
}
