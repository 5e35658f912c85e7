//go:build !linux

package probes

import "errors"

// netlinkListeners needs Linux's sock_diag; elsewhere the listeners are
// read from /proc.
func netlinkListeners() (map[int][]uint64, error) {
	return nil, errors.New("sock_diag: Linux only")
}
