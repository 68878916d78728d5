package activator

import (
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// drainChunk is how much one recv may discard, and drainChunks how many
// recvs one pass makes: a peer that never stops sending must not keep a
// pass from returning to the lingerer, where the linger deadline applies.
const (
	drainChunk  = 1 << 20
	drainChunks = 16
)

// TCP states as TCP_INFO reports them (the kernel's net/tcp_states.h) in
// which the peer's FIN has arrived.
const (
	tcpTimeWait  = 6
	tcpCloseWait = 8
	tcpLastAck   = 9
	tcpClosing   = 11
)

// endOutput shuts down the write side of the connection: the peer sees end
// of file after everything the handler wrote.
func endOutput(fd int) { _ = unix.Shutdown(fd, unix.SHUT_WR) }

// closeConn closes socketd's copy of a connection whose handler is gone and
// whose output has ended (endOutput), gracefully, and calls closed with the
// bytes received from and acknowledged by the peer, once it is closed: at
// once, or later from the lingerer.
//
// A plain close with unread input makes the kernel send a reset, and a
// reset makes the peer's kernel discard whatever it has not yet delivered
// to the client: the handler's output. So after the write side is shut
// down, the input is read and discarded until the peer closes or linger
// passes, and only then is the socket closed.
func (a *Activator) closeConn(fd int, linger time.Duration, closed func(in, out int64)) {
	// Most peers have closed already, or have nothing more to send: try
	// once before handing the connection to the lingerer.
	eof, err := drain(fd)
	if eof || err != nil || linger <= 0 || !a.lingerer.add(fd, time.Now().Add(linger), closed) {
		in, out := tcpBytes(fd, eof)
		unix.Close(fd)
		closed(in, out)
	}
}

// drain discards what the peer has sent without copying it (MSG_TRUNC on
// TCP), until none is left or the pass is over. eof reports that the peer
// has closed its side. A unix socket has no MSG_TRUNC for streams (it
// fails with EFAULT): its input is read into a scratch buffer.
func drain(fd int) (eof bool, err error) {
	var scratch []byte
	for range drainChunks {
		var n uintptr
		var e unix.Errno
		if scratch == nil {
			n, _, e = unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), 0, drainChunk,
				unix.MSG_TRUNC|unix.MSG_DONTWAIT, 0, 0)
		} else {
			n, _, e = unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&scratch[0])),
				uintptr(len(scratch)), unix.MSG_DONTWAIT, 0, 0)
		}
		switch {
		case e == unix.EINTR:
		case e == unix.EFAULT && scratch == nil:
			scratch = make([]byte, 64<<10)
		case e == unix.EAGAIN:
			return false, nil
		case e != 0:
			return false, e
		case n == 0:
			return true, nil
		}
	}
	return false, nil
}

// tcpBytes returns the payload bytes received from the peer and
// acknowledged by it, from TCP_INFO. The kernel counts a FIN as one byte in
// both counters, so a FIN is taken off: the peer's when it has arrived
// (peerFIN, or a state that implies it), socketd's by capping the
// acknowledged count at the unique payload bytes sent.
func tcpBytes(fd int, peerFIN bool) (in, out int64) {
	ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return 0, 0
	}
	switch ti.State {
	case tcpTimeWait, tcpCloseWait, tcpLastAck, tcpClosing:
		peerFIN = true
	}
	in = int64(ti.Bytes_received)
	if peerFIN && in > 0 {
		in--
	}
	out = min(int64(ti.Bytes_acked), int64(ti.Bytes_sent-ti.Bytes_retrans))
	return in, out
}
