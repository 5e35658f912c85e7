package zmtp

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"testing"
)

func frame(flag byte, body []byte) []byte {
	if len(body) > 255 {
		h := make([]byte, 9)
		h[0] = flag | flagLong
		binary.BigEndian.PutUint64(h[1:], uint64(len(body)))
		return append(h, body...)
	}
	return append([]byte{flag, byte(len(body))}, body...)
}

func TestGuard(t *testing.T) {
	greeting := bytes.Repeat([]byte{'g'}, greetingLen)
	cases := []struct {
		name      string
		in        []byte
		want      []byte
		oversized uint64
	}{
		{"small frames pass", frame(flagMore, []byte("topic")), frame(flagMore, []byte("topic")), 0},
		{"long frame under limit", frame(0, make([]byte, 300)), frame(0, make([]byte, 300)), 0},
		{"oversized becomes empty", append(frame(flagMore, []byte("t")), frame(0, make([]byte, 2000))...), append(frame(flagMore, []byte("t")), 0, 0), 1},
		{"oversized keeps more flag", frame(flagMore, make([]byte, 5000)), []byte{flagMore, 0}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := &guard{r: bufio.NewReaderSize(bytes.NewReader(append(greeting, tc.in...)), 64), max: 1024, greeting: greetingLen}
			out, err := io.ReadAll(g)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, append(greeting, tc.want...)) {
				t.Fatalf("got %v", out[greetingLen:])
			}
			if g.oversized != tc.oversized {
				t.Fatalf("oversized = %d, want %d", g.oversized, tc.oversized)
			}
		})
	}
}

func FuzzGuard(f *testing.F) {
	f.Add(frame(0, []byte("x")))
	f.Add(frame(flagMore, make([]byte, 4000)))
	f.Fuzz(func(t *testing.T, data []byte) {
		g := &guard{r: bufio.NewReaderSize(bytes.NewReader(data), 16), max: 512}
		out, _ := io.ReadAll(io.LimitReader(g, 1<<20))
		if len(out) > len(data)+2 {
			t.Fatalf("guard produced %d bytes from %d", len(out), len(data))
		}
	})
}

func TestEndpoint(t *testing.T) {
	cases := []struct{ ep, network, addr string }{
		{"tcp://127.0.0.1:5555", "tcp", "127.0.0.1:5555"},
		{"ipc:///tmp/x.sock", "unix", "/tmp/x.sock"},
		{"udp://1.2.3.4:5", "", ""},
		{"127.0.0.1:5", "", ""},
		{"tcp://nohost", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.ep, func(t *testing.T) {
			n, a, err := Endpoint(tc.ep)
			if (err != nil) != (tc.network == "") || n != tc.network || a != tc.addr {
				t.Fatalf("Endpoint(%q) = %q, %q, %v", tc.ep, n, a, err)
			}
		})
	}
}

func TestParseHello(t *testing.T) {
	cases := []struct {
		name       string
		body       []byte
		user, pass string
		ok         bool
	}{
		{"ok", []byte("\x03bob\x02pw"), "bob", "pw", true},
		{"empty", nil, "", "", false},
		{"short user", []byte("\x09bob"), "", "", false},
		{"trailing", []byte("\x03bob\x02pwX"), "", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u, p, ok := parseHello(tc.body)
			if u != tc.user || p != tc.pass || ok != tc.ok {
				t.Fatalf("got %q %q %v", u, p, ok)
			}
		})
	}
}
