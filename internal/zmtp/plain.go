package zmtp

import (
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/go-zeromq/zmq4"
)

// plainServer is the server side of ZMTP PLAIN (RFC 24) that checks the
// client's credentials; zmq4's own accepts any.
type plainServer struct {
	auth func(user, pass string) bool
	user string
}

func (*plainServer) Type() zmq4.SecurityType { return zmq4.PlainSecurity }

// ErrAuth is returned when a peer's PLAIN credentials are refused.
var ErrAuth = errors.New("plain: credentials refused")

func (s *plainServer) Handshake(conn *zmq4.Conn, server bool) error {
	if !server {
		return errors.New("plain: server mechanism used by a client")
	}
	cmd, err := conn.RecvCmd()
	if err != nil {
		return fmt.Errorf("plain: receive HELLO: %w", err)
	}
	if cmd.Name != zmq4.CmdHello {
		return fmt.Errorf("plain: got %s, want HELLO", cmd.Name)
	}
	user, pass, ok := parseHello(cmd.Body)
	if !ok || !s.auth(user, pass) {
		reason := "invalid credentials"
		_ = conn.SendCmd(zmq4.CmdError, append([]byte{byte(len(reason))}, reason...))
		if !ok {
			return fmt.Errorf("%w: malformed HELLO", ErrAuth)
		}
		return fmt.Errorf("%w: user %q", ErrAuth, user)
	}
	if err := conn.SendCmd(zmq4.CmdWelcome, nil); err != nil {
		return fmt.Errorf("plain: send WELCOME: %w", err)
	}
	cmd, err = conn.RecvCmd()
	if err != nil {
		return fmt.Errorf("plain: receive INITIATE: %w", err)
	}
	if cmd.Name != zmq4.CmdInitiate {
		return fmt.Errorf("plain: got %s, want INITIATE", cmd.Name)
	}
	if err := conn.Peer.Meta.UnmarshalZMTP(cmd.Body); err != nil {
		return fmt.Errorf("plain: peer metadata: %w", err)
	}
	raw, err := conn.Meta.MarshalZMTP()
	if err != nil {
		return fmt.Errorf("plain: metadata: %w", err)
	}
	if err := conn.SendCmd(zmq4.CmdReady, raw); err != nil {
		return fmt.Errorf("plain: send READY: %w", err)
	}
	s.user = user
	return nil
}

func parseHello(b []byte) (user, pass string, ok bool) {
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return "", "", false
	}
	user, b = string(b[1:1+int(b[0])]), b[1+int(b[0]):]
	if len(b) < 1 || len(b) != 1+int(b[0]) {
		return "", "", false
	}
	return user, string(b[1:]), true
}

func (*plainServer) Encrypt(w io.Writer, data []byte) (int, error) { return w.Write(data) }
func (*plainServer) Decrypt(w io.Writer, data []byte) (int, error) { return w.Write(data) }

var (
	_ zmq4.Security = (*plainServer)(nil)
	_ net.Conn      = (*bufConn)(nil)
	_ io.Reader     = (*guard)(nil)
)
