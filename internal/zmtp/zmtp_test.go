package zmtp

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
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
	cat := func(fs ...[]byte) []byte { return bytes.Join(fs, nil) }
	cases := []struct {
		name    string
		in      []byte
		want    []byte // what passes before the error
		tooBig  bool
		message string
	}{
		{name: "small frames pass", in: frame(flagMore, []byte("topic")), want: frame(flagMore, []byte("topic"))},
		{name: "long frame under limit", in: frame(0, make([]byte, 300)), want: frame(0, make([]byte, 300))},
		{name: "limit per message, not per connection",
			in:   cat(frame(flagMore, make([]byte, 600)), frame(0, make([]byte, 400)), frame(0, make([]byte, 1000))),
			want: cat(frame(flagMore, make([]byte, 600)), frame(0, make([]byte, 400)), frame(0, make([]byte, 1000)))},
		{name: "oversized frame stops at its header",
			in:   cat(frame(flagMore, []byte("t")), frame(0, make([]byte, 2000))),
			want: frame(flagMore, []byte("t")), tooBig: true, message: "frame of 2000 bytes, limit 1024"},
		{name: "frames adding up past the limit",
			in:   cat(frame(flagMore, make([]byte, 600)), frame(flagMore, make([]byte, 600)), frame(0, []byte("x"))),
			want: frame(flagMore, make([]byte, 600)), tooBig: true, message: "over 1024 bytes after 2 frames"},
		{name: "endless empty frames",
			in:   bytes.Repeat([]byte{flagMore, 0}, 100),
			want: bytes.Repeat([]byte{flagMore, 0}, 4), tooBig: true, message: "more than 4 frames"},
		{name: "a huge length is not read", in: cat([]byte{flagLong}, bytes.Repeat([]byte{0xff}, 8)), tooBig: true, message: "limit 1024"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := &guard{r: bufio.NewReaderSize(bytes.NewReader(append(greeting, tc.in...)), 64), max: 1024, maxFrames: 4, greeting: greetingLen}
			out, err := io.ReadAll(g)
			if !bytes.Equal(out, append(greeting, tc.want...)) {
				t.Fatalf("passed %d bytes %v, want %d", len(out)-greetingLen, out[greetingLen:min(len(out), greetingLen+16)], len(tc.want))
			}
			if !tc.tooBig {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("err = %v, want ErrTooLarge with %q", err, tc.message)
			}
			if _, again := g.Read(make([]byte, 8)); again != err {
				t.Fatalf("second read: %v, want the same error", again)
			}
		})
	}
}

func FuzzGuard(f *testing.F) {
	f.Add(frame(0, []byte("x")))
	f.Add(frame(flagMore, make([]byte, 4000)))
	f.Add(append(frame(flagMore, []byte("topic")), frame(0, make([]byte, 40))...)) // a body past the 16-byte buffer
	f.Fuzz(func(t *testing.T, data []byte) {
		g := &guard{r: bufio.NewReaderSize(bytes.NewReader(data), 16), max: 512, maxFrames: 8}
		out, _ := io.ReadAll(io.LimitReader(g, 1<<20))
		if len(out) > len(data) {
			t.Fatalf("guard produced %d bytes from %d", len(out), len(data))
		}
		// A budget (which waits for the body before passing a header)
		// changes nothing in what passes, but for the last frame when the
		// stream ends in its body.
		b := &guard{r: bufio.NewReaderSize(bytes.NewReader(data), 16), max: 512, maxFrames: 8, budget: NewBudget(1<<30, time.Millisecond)}
		outB, _ := io.ReadAll(io.LimitReader(b, 1<<20))
		if !bytes.HasPrefix(out, outB) {
			t.Fatalf("with a budget the guard passed %x, without %x", outB, out)
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
