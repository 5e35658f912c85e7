//go:build !unix

package messagebus

import (
	"errors"
	"net"
)

// socketPair needs a unix system; elsewhere the agent's own plugins have no
// bus connection.
func socketPair() (net.Conn, net.Conn, error) {
	return nil, nil, errors.New("in-process bus connections need a unix system")
}
