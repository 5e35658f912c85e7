package probes

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// The sock_diag netlink messages (linux/inet_diag.h) this file speaks.
const (
	sizeofInetDiagSockID = 48                            // sport, dport, src[4], dst[4], if, cookie[2]
	sizeofInetDiagReqV2  = 8 + sizeofInetDiagSockID      // family, protocol, ext, pad, states, id
	sizeofInetDiagMsg    = 4 + sizeofInetDiagSockID + 20 // family, state, timer, retrans, id, expires, rqueue, wqueue, uid, inode
	tcpListen            = 10                            // TCP_LISTEN
	// maxDiagBytes bounds what one dump reads: a host with more listening
	// sockets than this holds (some 28 000) is read from /proc instead.
	maxDiagBytes = 2 << 20
)

// errDiagTooLarge: the dump did not end within maxDiagBytes.
var errDiagTooLarge = errors.New("sock_diag: more listening sockets than read at once")

// netlinkListeners returns the inodes of the TCP sockets listening (IPv4
// and IPv6) by port, by asking the kernel over NETLINK_SOCK_DIAG, as ss(8)
// does, for the listening sockets only: its cost follows the number of
// listeners, where /proc/net/tcp lists every connection of the network
// namespace, thousands on a busy host, as text.
func netlinkListeners() (map[int][]uint64, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_INET_DIAG)
	if err != nil {
		return nil, fmt.Errorf("sock_diag: %w", os.NewSyscallError("socket", err))
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("sock_diag: %w", os.NewSyscallError("connect", err))
	}
	all := map[int][]uint64{}
	buf := make([]byte, 32<<10)
	for i, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		seq := uint32(i + 1)
		req := make([]byte, unix.NLMSG_HDRLEN+sizeofInetDiagReqV2)
		binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
		binary.NativeEndian.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
		binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
		binary.NativeEndian.PutUint32(req[8:], seq)
		r := req[unix.NLMSG_HDRLEN:]
		r[0], r[1] = family, unix.IPPROTO_TCP
		binary.NativeEndian.PutUint32(r[4:], 1<<tcpListen)
		if _, err := unix.Write(fd, req); err != nil {
			return nil, fmt.Errorf("sock_diag: %w", os.NewSyscallError("write", err))
		}
		read := 0
	dump:
		for {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				return nil, fmt.Errorf("sock_diag: %w", os.NewSyscallError("recvfrom", err))
			}
			if read += n; read > maxDiagBytes {
				return nil, errDiagTooLarge
			}
			msgs, err := syscall.ParseNetlinkMessage(buf[:n])
			if err != nil {
				return nil, fmt.Errorf("sock_diag: %w", err)
			}
			for _, m := range msgs {
				if m.Header.Seq != seq {
					continue
				}
				switch m.Header.Type {
				case unix.NLMSG_DONE:
					break dump
				case unix.NLMSG_ERROR:
					if len(m.Data) >= 4 {
						if e := int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
							if family == unix.AF_INET6 && unix.Errno(-e) == unix.ENOENT {
								break dump // no IPv6
							}
							return nil, fmt.Errorf("sock_diag: %w", unix.Errno(-e))
						}
					}
					break dump
				case unix.SOCK_DIAG_BY_FAMILY:
					d := m.Data
					if len(d) < sizeofInetDiagMsg || d[1] != tcpListen {
						continue
					}
					sport := int(binary.BigEndian.Uint16(d[4:]))
					all[sport] = append(all[sport], uint64(binary.NativeEndian.Uint32(d[4+sizeofInetDiagSockID+16:])))
				}
			}
		}
	}
	return all, nil
}
