// Package zmtp is the ZeroMQ transport that the message bus broker and its
// client share. It uses go-zeromq/zmq4's ZMTP 3.0 connection (greeting,
// security handshake, framing) directly on net.Conns instead of zmq4's
// sockets, whose PUB queues are unbounded and drop silently and whose
// XSUB/XPUB proxy does not forward subscriptions. On top of zmq4.Conn it
// adds buffered writes flushed in batches, a size guard that checks each
// frame's header against the message's limits before zmq4 allocates its
// body (and stops the connection past them), heartbeat PINGs answered
// under the write lock (zmq4 answers them from the reading goroutine,
// racing the writer), handshake deadlines, and a PLAIN server mechanism
// that really checks credentials.
//
// Peers are ordinary ZeroMQ PUB and SUB sockets, in any language.
package zmtp
